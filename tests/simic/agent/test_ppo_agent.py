"""PPOAgent with real bundles: exact first ratio, KL early stop, refusals, determinism and a bandit that learns."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import pytest
import torch

from esper.simic.agent import PPOAgent, PPOConfig, RolloutBuffer, UpdateMetrics
from esper.tamiyo.contract import (
    ActionMasks,
    LifecycleOp,
    Observation,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_batch_masks,
    feature_size,
)
from esper.tamiyo.networks import ActorCriticHeads
from esper.tamiyo.policy import PolicyBundle, create_policy

SLOTS = SlotConfig()
F = feature_size(SLOTS.num_slots)
SMALL = {"hidden_size": 16, "lstm_hidden": 16}

RewardFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _policy(kind: str = "lstm", seed: int = 0, **kwargs: object) -> PolicyBundle:
    torch.manual_seed(seed)
    return create_policy(kind, slot_config=SLOTS, **{**SMALL, **kwargs})


def _masks(num_envs: int) -> ActionMasks:
    """Varied but always-valid masks: empty slots, a TRAINING seed, a HOLDING seed."""
    kinds = [
        {"r0c0": None, "r0c1": None, "r0c2": None},
        {"r0c0": SlotState(SeedStage.TRAINING, age_epochs=5), "r0c1": None, "r0c2": None},
        {"r0c0": None, "r0c1": SlotState(SeedStage.HOLDING, age_epochs=9), "r0c2": None},
    ]
    return compute_batch_masks([kinds[i % 3] for i in range(num_envs)], slot_config=SLOTS, topology="mlp")


def _germinate_reward(actions: dict[str, torch.Tensor]) -> torch.Tensor:
    return (actions["op"] == LifecycleOp.GERMINATE).float()


def _collect(
    policy: PolicyBundle,
    buffer: RolloutBuffer,
    seed: int,
    reward_fn: RewardFn = _germinate_reward,
    masks: ActionMasks | None = None,
    all_executed_wait: bool = False,
) -> torch.Tensor:
    """One round of lockstep episodes ending by truncation; returns the mean reward per step."""
    torch.manual_seed(seed)
    n, steps = buffer.num_envs, buffer.num_steps
    masks = _masks(n) if masks is None else masks
    g = torch.Generator().manual_seed(seed)
    hidden = policy.initial_hidden(n)
    buffer.reset(hidden)
    rewards_seen = []
    for t in range(steps):
        obs = Observation(torch.randn(n, F, generator=g), torch.full((n, SLOTS.num_slots), -1))
        result = policy.get_action(obs, masks, hidden)
        rewards = reward_fn(dict(result.actions))
        last = t == steps - 1
        truncated = torch.full((n,), last)
        bootstrap = policy.get_value(obs, result.hidden) if last else None
        executed = torch.zeros_like(result.actions["op"]) if all_executed_wait else result.actions["op"]
        buffer.add(
            obs=obs,
            masks=masks,
            result=result,
            executed_op=executed,
            rewards=rewards,
            terminated=torch.zeros(n, dtype=torch.bool),
            truncated=truncated,
            active=torch.ones(n, dtype=torch.bool),
            bootstrap_values=bootstrap,
        )
        rewards_seen.append(rewards)
        hidden = result.hidden
    return torch.stack(rewards_seen).mean()


def _round(
    policy: PolicyBundle, config: PPOConfig, *, num_envs: int = 4, steps: int = 6
) -> tuple[PPOAgent, UpdateMetrics]:
    agent = PPOAgent(policy, config)
    buffer = RolloutBuffer.for_policy(policy, num_envs=num_envs, num_steps=steps)
    _collect(policy, buffer, seed=1)
    return agent, agent.update(buffer)


def test_first_epoch_ratio_is_exactly_one_with_a_real_lstm_bundle() -> None:
    _, metrics = _round(_policy("lstm"), PPOConfig(update_epochs=2, num_minibatches=2))
    assert metrics.first_ratio_deviation == 0.0
    assert metrics.rollout_log_prob_drift < 1e-5  # the rollout's stored log-probs agree with the update leg
    assert metrics.gradient_steps == 4 and metrics.epochs_completed == 2 and not metrics.early_stopped
    assert metrics.num_valid_steps == 24


def test_fewer_environments_than_minibatches_take_one_minibatch_each() -> None:
    assert PPOConfig().num_minibatches == 4 and PPOConfig().minibatches_for(2) == 2
    assert PPOConfig(num_minibatches=3).minibatches_for(8) == 3
    _, metrics = _round(_policy("lstm"), PPOConfig(update_epochs=2, target_kl=None), num_envs=2)
    assert metrics.gradient_steps == 4 and metrics.epochs_completed == 2


def test_mlp_bundle_trains_too() -> None:
    _, metrics = _round(_policy("mlp"), PPOConfig(update_epochs=1))
    assert metrics.first_ratio_deviation == 0.0 and metrics.gradient_steps == 4  # one minibatch per environment


def test_kl_early_stopping_fires_with_an_absurd_learning_rate() -> None:
    config = PPOConfig(learning_rate=1.0, update_epochs=8, num_minibatches=2, target_kl=0.01)
    _, metrics = _round(_policy("lstm"), config)
    assert metrics.early_stopped and metrics.early_stop_epoch is not None
    assert metrics.gradient_steps < 16 and metrics.epochs_completed == metrics.early_stop_epoch
    assert metrics.approx_kl > 0.0


def test_entropy_anneal_follows_the_updates_taken_and_resumes_with_them() -> None:
    """Each update uses the weight of the updates already taken; a restored agent continues the anneal."""
    config = PPOConfig(update_epochs=1, entropy_coef=0.05, entropy_coef_end=0.01, entropy_anneal_updates=2)
    policy = _policy("lstm")
    agent = PPOAgent(policy, config)
    buffer = RolloutBuffer.for_policy(policy, num_envs=2, num_steps=4)
    weights = []
    for seed in range(3):
        _collect(policy, buffer, seed=seed)
        weights.append(agent.update(buffer).entropy_coef)
    assert weights == pytest.approx([0.05, 0.03, 0.01])
    restored = PPOAgent(policy, config)
    restored.load_state_dict(agent.state_dict())
    _collect(policy, buffer, seed=3)
    assert restored.update(buffer).entropy_coef == pytest.approx(0.01)
    unannealed = PPOAgent(policy, PPOConfig(update_epochs=1))
    assert unannealed.update(buffer).entropy_coef == 0.05


def test_non_trainable_bundle_is_refused() -> None:
    heuristic = create_policy("heuristic", slot_config=SLOTS, topology="mlp")
    with pytest.raises(ValueError, match="no trainable parameters"):
        PPOAgent(heuristic, PPOConfig())
    frozen = _policy("lstm")
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        PPOAgent(frozen, PPOConfig())


def test_a_policy_with_probability_floors_trains_under_any_ppo_config() -> None:
    """Floors are the policy's own option: PPO neither reads nor checks them, and the first ratio is 1."""
    _, metrics = _round(_policy("lstm", probability_floor={"op": 0.2, "slot": 0.1}), PPOConfig(update_epochs=1))
    assert metrics.first_ratio_deviation == 0.0 and metrics.gradient_steps == 4


def test_buffer_must_fit_the_policy() -> None:
    policy = _policy("lstm")
    agent = PPOAgent(policy, PPOConfig())
    other = RolloutBuffer(num_envs=2, num_steps=2, feature_dim=F + 1, num_slots=3, action_space=policy.action_space)
    with pytest.raises(ValueError, match="feature_dim"):
        agent.update(other)
    empty = RolloutBuffer.for_policy(policy, num_envs=2, num_steps=2)
    empty.reset(policy.initial_hidden(2))
    with pytest.raises(ValueError, match="no valid step"):
        agent.update(empty)


def test_a_non_finite_gradient_is_never_stepped() -> None:
    """Clipping an infinite gradient norm would turn every gradient (and then every weight) into NaN."""
    policy = _policy("mlp")
    agent = PPOAgent(policy, PPOConfig(update_epochs=1))
    buffer = RolloutBuffer.for_policy(policy, num_envs=2, num_steps=3)
    _collect(policy, buffer, seed=1)
    before = [p.detach().clone() for p in policy.parameters()]
    next(iter(policy.parameters())).register_hook(lambda grad: grad * math.inf)
    with pytest.raises(FloatingPointError, match="non-finite gradient norm in epoch 0"):
        agent.update(buffer)
    assert all(torch.equal(old, new) for old, new in zip(before, policy.parameters(), strict=True))
    assert agent.num_gradient_steps == 0


def test_update_is_deterministic_and_state_dict_roundtrips_weights_only() -> None:
    config = PPOConfig(update_epochs=2, num_minibatches=2)
    agent_a, metrics_a = _round(_policy("lstm", seed=3), config)
    agent_b, metrics_b = _round(_policy("lstm", seed=3), config)
    assert metrics_a == metrics_b
    assert all(torch.equal(x, y) for x, y in zip(agent_a.policy.parameters(), agent_b.policy.parameters(), strict=True))

    raw = io.BytesIO()
    torch.save(agent_a.state_dict(), raw)
    raw.seek(0)
    restored = PPOAgent(agent_b.policy, config, generator=torch.Generator().manual_seed(99))
    restored.load_state_dict(torch.load(raw, weights_only=True))
    assert restored.num_updates == 1 and restored.num_gradient_steps == metrics_a.gradient_steps
    assert torch.equal(restored.generator.get_state(), agent_a.generator.get_state())
    assert restored.value_normalizer is not None and restored.value_normalizer.scale == agent_a.value_normalizer.scale
    # continuing from the restored state is identical to continuing the original
    buffers = [RolloutBuffer.for_policy(agent.policy, num_envs=4, num_steps=6) for agent in (agent_a, restored)]
    for agent, buffer in zip((agent_a, restored), buffers, strict=True):
        _collect(agent.policy, buffer, seed=7)
    assert agent_a.update(buffers[0]) == restored.update(buffers[1])
    with pytest.raises(ValueError, match="normalize_value_targets"):
        PPOAgent(agent_b.policy, PPOConfig(normalize_value_targets=False)).load_state_dict(agent_a.state_dict())


def test_heads_irrelevant_to_every_executed_op_get_zero_gradient_end_to_end() -> None:
    """Every executed op is WAIT (e.g. all chosen actions were invalid): only the op head, the trunk and
    the critics may learn; every other policy head's parameters get an exactly-zero gradient."""
    policy = _policy("lstm", seed=2)
    agent = PPOAgent(policy, PPOConfig(update_epochs=1, entropy_coef=0.1))
    buffer = RolloutBuffer.for_policy(policy, num_envs=4, num_steps=5)
    _collect(policy, buffer, seed=4, all_executed_wait=True)
    agent.update(buffer)
    heads = policy.network.heads if policy.network is not None else None
    assert isinstance(heads, ActorCriticHeads)  # tamiyo's public head block, not its parameter names
    for head in policy.action_space.head_names:
        head_grads = [p.grad for p in heads.policy[head].parameters()]
        assert head_grads, head
        nonzero = sum(int(torch.count_nonzero(g)) for g in head_grads)
        assert (nonzero > 0) == (head == "op"), (head, nonzero)


@pytest.mark.slow  # a learning check: seven rollouts and six updates
def test_bandit_mean_return_rises_within_a_few_updates() -> None:
    """Reward 1 for GERMINATE, 0 otherwise (always valid here): P(GERMINATE) must climb fast."""
    policy = _policy("lstm", seed=5)
    agent = PPOAgent(policy, PPOConfig(learning_rate=3e-3, update_epochs=4, num_minibatches=2, entropy_coef=0.0))
    buffer = RolloutBuffer.for_policy(policy, num_envs=8, num_steps=8)
    masks = compute_batch_masks([{"r0c0": None, "r0c1": None, "r0c2": None}] * 8, slot_config=SLOTS, topology="mlp")
    means = []
    for round_index in range(6):
        means.append(float(_collect(policy, buffer, seed=100 + round_index, masks=masks)))
        agent.update(buffer)
    final = float(_collect(policy, buffer, seed=999, masks=masks))
    assert means[0] < 0.7, means
    assert final > 0.8 and final > means[0] + 0.25, (means, final)
