"""The lockstep loop (play_round), the policy as an act function, and round statistics read from the buffer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import torch

from esper.simic.agent import ObservationNormalizer, RolloutBuffer
from esper.simic.env import EpisodeSummary, VectorReset, VectorStep
from esper.simic.training.rollout import (
    PolicyActor,
    executed_op_counts,
    invalid_actions,
    play_round,
    relevant_entropy_means,
)
from esper.tamiyo.contract import ActionMasks, LifecycleOp, Observation, SlotConfig, morphogenetic_action_space
from esper.tamiyo.policy import ActionResult, Hidden

T, F = True, False
SPACE = morphogenetic_action_space(SlotConfig.for_count(1))


def summary(episode_return: float, length: int) -> EpisodeSummary:
    return EpisodeSummary(
        discounted_return=episode_return,
        reward_components={},
        length=length,
        final_accuracy=50.0,
        final_loss=1.0,
        host_accuracy=50.0,
        committed_accuracy=50.0,
        germinated=0,
        fossilized=0,
        pruned=0,
        rollbacks=0,
        invalid_actions=0,
        fossilized_slots=(),
        seed_params=0,
        host_params=10,
        extra_compute=0.0,
        objective=50.0,
    )


class CountdownVectorEnv:
    """Env ``i``'s episode lasts ``lengths[i]`` steps (then it is inactive); observation feature 0 is the step count.

    Its summary's return is its reset seed, which tells the episodes apart.
    """

    def __init__(self, lengths: Sequence[int], *, report_episodes: bool = True) -> None:
        self.lengths = list(lengths)
        self.report_episodes = report_episodes
        self.t = 0
        self.seeds: Sequence[int] = ()

    @property
    def num_envs(self) -> int:
        return len(self.lengths)

    def _obs(self) -> Observation:
        return Observation(
            torch.full((self.num_envs, 1), float(self.t)), torch.zeros(self.num_envs, 0, dtype=torch.long)
        )

    def _masks(self) -> ActionMasks:
        return ActionMasks({"op": torch.ones(self.num_envs, len(LifecycleOp), dtype=torch.bool)})

    def reset(self, seeds: Sequence[int]) -> VectorReset:
        self.t, self.seeds = 0, seeds
        return VectorReset(obs=self._obs(), masks=self._masks(), infos=())

    def step(self, actions: Mapping[str, torch.Tensor]) -> VectorStep:
        self.t += 1
        ends = [self.t == n for n in self.lengths]
        return VectorStep(
            obs=self._obs(),
            masks=self._masks(),
            rewards=torch.zeros(self.num_envs),
            terminated=torch.zeros(self.num_envs, dtype=torch.bool),
            truncated=torch.tensor(ends),
            executed_op=actions["op"],
            active=torch.tensor([self.t <= n for n in self.lengths]),
            infos=(None,) * self.num_envs,
            episodes=tuple(
                summary(float(seed), n) if end and self.report_episodes else None
                for seed, n, end in zip(self.seeds, self.lengths, ends, strict=True)
            ),
        )


def test_play_round_steps_until_every_episode_has_ended() -> None:
    venv = CountdownVectorEnv([1, 3])
    seen: list[float] = []
    steps: list[VectorStep] = []

    def wait(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        seen.append(float(obs.features[0, 0]))
        return {"op": torch.zeros(2, dtype=torch.long)}

    outcome = play_round(venv, wait, [7, 8], on_step=steps.append)
    assert seen == [0.0, 1.0, 2.0]  # each act sees the observation the previous step returned
    assert [s.active.tolist() for s in steps] == [[T, T], [F, T], [F, T]]
    assert [(e.discounted_return, e.length) for e in outcome.episodes] == [(7.0, 1), (8.0, 3)]  # env order
    assert outcome.env_s >= 0.0


def test_play_round_refuses_an_environment_that_ends_without_its_summary() -> None:
    with pytest.raises(RuntimeError, match="without reporting its episode"):
        play_round(CountdownVectorEnv([2], report_episodes=False), lambda obs, masks: {"op": torch.zeros(1)}, [0])


class RecordingPolicy:
    """A stand-in bundle that records its inputs; its hidden state counts the calls."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, Hidden, bool, torch.Generator | None]] = []

    def initial_hidden(self, batch_size: int) -> Hidden:
        return (torch.zeros(1, batch_size, 1),)

    def get_action(
        self,
        obs: Observation,
        masks: ActionMasks,
        hidden: Hidden = None,
        deterministic: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> ActionResult:
        self.calls.append((obs.features.clone(), hidden, deterministic, generator))
        assert hidden is not None
        zeros = {"op": torch.zeros(2)}
        return ActionResult({"op": torch.tensor([1, 2])}, zeros, zeros, torch.zeros(2), (hidden[0] + 1,))

    def get_value(self, obs: Observation, hidden: Hidden = None) -> torch.Tensor:
        assert hidden is not None
        return obs.features[:, 0] * 10 + hidden[0][0, :, 0]


def test_policy_actor_normalises_threads_the_hidden_state_and_bootstraps_with_it() -> None:
    policy = RecordingPolicy()
    normalizer = ObservationNormalizer(1)
    normalizer.update(torch.tensor([[1.0], [3.0]]))  # mean 2, std 1: x -> x - 2 (up to the epsilon)
    generator = torch.Generator()
    actor = PolicyActor(policy, 2, normalizer=normalizer, generator=generator)  # type: ignore[arg-type]
    raw = Observation(torch.tensor([[2.0], [4.0]]), torch.zeros(2, 0, dtype=torch.long))
    masks = ActionMasks({"op": torch.ones(2, 6, dtype=torch.bool)})
    assert actor(raw, masks)["op"].tolist() == [1, 2]
    actor(raw, masks)
    (first, hidden_0, deterministic, passed), (_, hidden_1, _, _) = policy.calls
    assert first[:, 0].tolist() == pytest.approx([0.0, 2.0], abs=1e-3) and passed is generator and not deterministic
    assert hidden_0 is not None and hidden_1 is not None
    assert hidden_0[0].sum() == 0 and hidden_1[0].tolist() == [[[1.0], [1.0]]]
    assert actor.last is not None and actor.last.raw_obs is raw and actor.last.result.actions["op"].tolist() == [1, 2]
    assert actor.value(raw).tolist() == pytest.approx([2.0, 22.0], abs=1e-2)  # hidden after two calls: 2


def _result(ops: list[int], entropy: list[float]) -> ActionResult:
    actions = {
        h: torch.full((2,), p, dtype=torch.long) for h, p in zip(SPACE.head_names, SPACE.placeholders, strict=True)
    }
    actions["op"] = torch.tensor(ops)
    per_head = {h: torch.tensor(entropy) for h in SPACE.head_names}
    return ActionResult(actions, {h: torch.zeros(2) for h in SPACE.head_names}, per_head, torch.zeros(2), None)


def test_round_statistics_are_read_from_the_buffer() -> None:
    """Two envs, two steps; env 1 invalidly FOSSILIZEs (runs as WAIT), then is padding (its sampled
    GERMINATE and entropy 0.9 must not count)."""
    buffer = RolloutBuffer(num_envs=2, num_steps=3, feature_dim=1, num_slots=1, action_space=SPACE)
    buffer.reset(None)
    masks = ActionMasks({h: torch.ones(2, n, dtype=torch.bool) for h, n in SPACE.sizes().items()})
    obs = Observation(torch.zeros(2, 1), torch.zeros(2, 1, dtype=torch.long))
    G, W = int(LifecycleOp.GERMINATE), int(LifecycleOp.WAIT)
    for ops, executed, entropy, active in (
        ([G, int(LifecycleOp.FOSSILIZE)], [G, W], [0.5, 0.25], [T, T]),
        ([W, G], [W, W], [0.75, 0.9], [T, F]),
    ):
        buffer.add(
            obs=obs,
            masks=masks,
            result=_result(ops, entropy),
            executed_op=torch.tensor(executed),
            rewards=torch.zeros(2),
            terminated=torch.zeros(2, dtype=torch.bool),
            truncated=torch.zeros(2, dtype=torch.bool),
            active=torch.tensor(active),
        )
    batch = buffer.data()
    assert executed_op_counts(batch, SPACE) == (2, 1, 0, 0, 0, 0)
    assert invalid_actions(batch, SPACE) == 1
    assert relevant_entropy_means(batch, SPACE) == {
        "slot": 0.375,  # GERMINATE and FOSSILIZE at step 0
        "blueprint": 0.5,
        "style": 0.5,
        "tempo": 0.5,
        "alpha_target": 0.5,  # only env 0's GERMINATE
        "alpha_speed": None,
        "alpha_curve": None,  # no op that uses them was sampled
        "op": 0.5,  # every valid step: (0.5 + 0.25 + 0.75) / 3
    }
