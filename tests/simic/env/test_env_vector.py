"""VectorEnv: batched reset/step, per-env equality with single envs, inactive envs after an early end."""

from __future__ import annotations

import math

import pytest
import torch

from esper.simic.env import EnvConfig, MorphogeneticEnv, VectorEnv
from esper.tamiyo.contract import LifecycleOp, feature_size

CONFIG = EnvConfig(task="synthetic", synthetic_train_size=64, synthetic_val_size=32, batch_size=32, episode_length=6)
WAIT = {"slot": 0, "blueprint": 0, "style": 2, "tempo": 1, "alpha_target": 2, "alpha_speed": 0, "alpha_curve": 0, "op": 0}


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
    assert step.infos[1]["action_valid"] is False and step.executed_op.tolist() == [0, 0]
    frozen = step.obs.features[0].clone()
    for _ in range(CONFIG.episode_length - 2):
        step = vec.step(_batched(WAIT, 2))
        assert step.active.tolist() == [False, True] and step.rewards[0].item() == 0.0
        assert torch.equal(step.obs.features[0], frozen) and step.infos[0] == {}
    assert step.truncated.tolist() == [False, True]


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
