"""VectorEnv: batched reset/step, per-env equality with single envs, inactive envs after an early end,
and a heuristic-driven run over four environments on the bundled digits task."""

from __future__ import annotations

import math

import pytest
import torch
from scripted_actions import WAIT

from esper.simic.env import EnvConfig, HostTraining, MorphogeneticEnv, SyntheticTask, VectorEnv, VectorStep
from esper.simic.training.rollout import PolicyActor, play_round
from esper.tamiyo.contract import LifecycleOp, feature_size
from esper.tamiyo.policy import create_policy

CONFIG = EnvConfig(
    task="synthetic",
    synthetic=SyntheticTask(train_size=64, val_size=32),
    host_training=HostTraining(batch_size=32),
    episode_length=6,
)


def _batched(action: dict[str, int], n: int) -> dict[str, torch.Tensor]:
    return {head: torch.full((n,), value, dtype=torch.int64) for head, value in action.items()}


def test_reset_and_step_shapes_match_single_envs() -> None:
    vec = VectorEnv(CONFIG, num_envs=3)
    reset = vec.reset([0, 1, 2])
    assert reset.obs.features.shape == (3, feature_size(3)) and reset.obs.blueprint_indices.shape == (3, 3)
    assert reset.masks.slot_by_op is not None and reset.masks.slot_by_op.shape == (3, 6, 3)
    assert reset.masks.heads["op"].shape == (3, 6) and len(reset.infos) == 3
    assert (vec.num_envs, vec.feature_dim, vec.topology) == (3, feature_size(3), "mlp")
    single = MorphogeneticEnv(CONFIG)
    single_reset = single.reset(1)
    assert torch.equal(reset.obs.features[1], single_reset.obs.features)
    step = vec.step(_batched(WAIT, 3))
    single_step = single.step(WAIT)
    assert torch.equal(step.obs.features[1], single_step.obs.features)
    assert step.rewards.dtype == torch.float32 and step.rewards[1].item() == pytest.approx(single_step.reward)
    assert step.active.tolist() == [True, True, True] and step.executed_op.tolist() == [0, 0, 0]


def test_finished_envs_are_not_stepped_again() -> None:
    vec = VectorEnv(CONFIG, num_envs=2)
    vec.reset([5, 6])
    vec.step(_batched(WAIT, 2))
    env0 = vec.envs[0]
    assert env0.model is not None
    with torch.no_grad():
        env0.model.host.head.weight.fill_(math.nan)
    step = vec.step(_batched({**WAIT, "op": int(LifecycleOp.FOSSILIZE)}, 2))
    assert step.terminated.tolist() == [True, False] and step.active.tolist() == [True, True]
    assert step.infos[1] is not None and step.infos[1].action_valid is False and step.executed_op.tolist() == [0, 0]
    assert step.episodes[0] is not None and step.episodes[0].rollbacks == 1 and step.episodes[1] is None
    frozen = step.obs.features[0].clone()
    for _ in range(CONFIG.episode_length - 2):
        step = vec.step(_batched(WAIT, 2))
        assert step.active.tolist() == [False, True] and step.rewards[0].item() == 0.0
        assert torch.equal(step.obs.features[0], frozen) and step.infos[0] is None and step.episodes[0] is None
    assert step.terminated.tolist() == [False, True] and step.truncated.tolist() == [False, False]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="num_envs"):
        VectorEnv(CONFIG, num_envs=0)
    vec = VectorEnv(CONFIG, num_envs=2)
    with pytest.raises(RuntimeError, match="before reset"):
        vec.step(_batched(WAIT, 2))
    with pytest.raises(ValueError, match="one seed per environment"):
        vec.reset([1])
    vec.reset([1, 2])
    with pytest.raises(ValueError, match="3 entries"):
        vec.step(_batched(WAIT, 3))


@pytest.mark.parametrize(
    ("episode_length", "expect_growth"),
    [(8, False), pytest.param(40, True, marks=pytest.mark.slow)],
)
def test_heuristic_run_over_four_digits_environments_completes(episode_length: int, expect_growth: bool) -> None:
    """Issue 4's "done when": four lockstep digits episodes driven by the heuristic bundle run to their
    last epoch. The full default 40-epoch episode (slow, ~2 s) must also show the lifecycle at work:
    with 8 epochs the heuristic is still waiting for the host to stabilise, 40 are enough to grow."""
    venv = VectorEnv(EnvConfig(episode_length=episode_length), num_envs=4)
    heuristic = create_policy("heuristic", slot_config=venv.slot_config, feature_dim=venv.feature_dim, topology="mlp")
    steps: list[VectorStep] = []
    episodes = play_round(
        venv, PolicyActor(heuristic, 4, deterministic=True), [0, 1, 2, 3], on_step=steps.append
    ).episodes
    executed: set[int] = set()
    for epoch, step in enumerate(steps, start=1):
        assert step.active.all() and not step.truncated.any()
        assert step.terminated.tolist() == [epoch == episode_length] * 4  # the last epoch is a true terminal
        assert bool(torch.isfinite(step.rewards).all()) and bool(torch.isfinite(step.obs.features).all())
        assert all(info is not None and info.action_valid for info in step.infos)  # the heuristic picks valid actions
        executed.update(step.executed_op.tolist())
    assert len(steps) == episode_length and list(episodes) == list(steps[-1].episodes)
    assert all(e.length == episode_length and e.rollbacks == 0 for e in episodes)
    assert all(0.0 < e.final_accuracy <= 100.0 for e in episodes)
    assert not venv.step(_batched(WAIT, 4)).active.any()  # every episode is over: nothing is stepped again
    if expect_growth:
        assert {int(LifecycleOp.GERMINATE), int(LifecycleOp.FOSSILIZE)} <= executed
        assert sum(e.fossilized for e in episodes) >= 1
