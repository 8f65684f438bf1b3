"""Learning works: on a bandit-like env with an obvious best action, the trainer's loop raises the return.

The env is driven through the trainer's own pieces (``collect_rollout`` with the frozen
observation normaliser and the reward normaliser, then ``PPOAgent.update`` and the normaliser
update), exactly the round body of ``train``; only the environment is a toy.
"""

from __future__ import annotations

import pytest
import torch

from esper.simic.agent import ObservationNormalizer, PPOAgent, PPOConfig, RewardNormalizer, RolloutBuffer
from esper.simic.env import EpisodeSummary, VectorReset, VectorStep
from esper.simic.training.rollout import collect_rollout
from esper.tamiyo.contract import (
    ActionMasks,
    LifecycleOp,
    Observation,
    SlotConfig,
    feature_size,
    morphogenetic_action_space,
)
from esper.tamiyo.policy import create_policy

LENGTH = 4
VALID_OPS = (LifecycleOp.WAIT, LifecycleOp.GERMINATE, LifecycleOp.PRUNE)


def bandit_summary(episode_return: float) -> EpisodeSummary:
    """The summary of a bandit episode: only the return means anything here."""
    return EpisodeSummary(
        discounted_return=episode_return,
        reward_components={},
        length=LENGTH,
        final_accuracy=0.0,
        final_loss=0.0,
        host_accuracy=0.0,
        committed_accuracy=0.0,
        germinated=0,
        fossilized=0,
        pruned=0,
        rollbacks=0,
        invalid_actions=0,
        fossilized_slots=(),
        seed_params=0,
        host_params=0,
        extra_compute=0.0,
        objective=0.0,
    )


class BanditVectorEnv:
    """Reward 1 for GERMINATE, 0 for WAIT or PRUNE, for ``LENGTH`` steps; a random policy earns 4/3."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.slot_config = SlotConfig.for_count(1)
        self.action_space = morphogenetic_action_space(self.slot_config)
        self.feature_dim = feature_size(1)
        self.t = 0
        self.returns = torch.zeros(num_envs)

    def _obs(self) -> Observation:
        features = torch.zeros(self.num_envs, self.feature_dim)
        features[:, 0] = self.t / LENGTH
        return Observation(features, torch.full((self.num_envs, 1), -1, dtype=torch.long))

    def _masks(self) -> ActionMasks:
        heads = {h: torch.ones(self.num_envs, n, dtype=torch.bool) for h, n in self.action_space.sizes().items()}
        heads["op"] = torch.zeros(self.num_envs, len(LifecycleOp), dtype=torch.bool)
        heads["op"][:, list(VALID_OPS)] = True
        return ActionMasks(heads, torch.ones(self.num_envs, len(LifecycleOp), 1, dtype=torch.bool))

    def reset(self, seeds: list[int]) -> VectorReset:
        assert len(seeds) == self.num_envs
        self.t = 0
        self.returns.zero_()
        return VectorReset(obs=self._obs(), masks=self._masks(), infos=())

    def step(self, actions: dict[str, torch.Tensor]) -> VectorStep:
        ops = actions["op"]
        rewards = (ops == LifecycleOp.GERMINATE).float()
        self.returns += rewards
        self.t += 1
        done = self.t == LENGTH
        return VectorStep(
            obs=self._obs(),
            masks=self._masks(),
            rewards=rewards,
            terminated=torch.zeros(self.num_envs, dtype=torch.bool),
            truncated=torch.full((self.num_envs,), done),
            executed_op=ops.clone(),
            active=torch.ones(self.num_envs, dtype=torch.bool),
            infos=(None,) * self.num_envs,
            episodes=tuple(bandit_summary(float(r)) if done else None for r in self.returns),
        )


@pytest.mark.slow
def test_mean_return_rises_clearly_within_a_few_rounds() -> None:
    torch.manual_seed(0)
    venv = BanditVectorEnv(num_envs=8)
    config = PPOConfig(learning_rate=3e-3, update_epochs=4, entropy_coef=0.0, target_kl=None)
    policy = create_policy("mlp", slot_config=venv.slot_config, hidden_size=32, lstm_hidden=32)
    agent = PPOAgent(policy, config, generator=torch.Generator().manual_seed(0))
    buffer = RolloutBuffer.for_policy(policy, num_envs=8, num_steps=LENGTH)
    obs_norm = ObservationNormalizer(venv.feature_dim)
    reward_norm = RewardNormalizer(8, gamma=config.gamma)
    sampler = torch.Generator().manual_seed(1)
    returns = []
    for _ in range(12):
        rollout = collect_rollout(
            venv,
            policy,
            buffer,
            seeds=list(range(8)),
            obs_normalizer=obs_norm,
            reward_normalizer=reward_norm,
            generator=sampler,
        )
        returns.append(sum(e.discounted_return for e in rollout.episodes) / 8)
        agent.update(buffer)
        obs_norm.update(rollout.raw_features)
    assert sum(returns[:2]) / 2 < 2.0  # about 4/3 for the initial near-uniform policy
    assert sum(returns[-2:]) / 2 > 3.3
