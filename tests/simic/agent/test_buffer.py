"""Rollout buffer: op-conditioned slot masks, executed vs sampled op, padding, views and env minibatches."""

from __future__ import annotations

import pytest
import torch

from esper.simic.agent import RolloutBuffer, env_minibatches
from esper.tamiyo.contract import (
    ActionMasks,
    ActionSpace,
    LifecycleOp,
    Observation,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_batch_masks,
    feature_size,
    morphogenetic_action_space,
)
from esper.tamiyo.policy import ActionResult

SLOTS = SlotConfig()
SPACE = morphogenetic_action_space(SLOTS)
F = feature_size(SLOTS.num_slots)
N = 2


def _buffer(num_steps: int = 3) -> RolloutBuffer:
    buffer = RolloutBuffer(num_envs=N, num_steps=num_steps, feature_dim=F, num_slots=3, action_space=SPACE)
    buffer.reset((torch.zeros(1, N, 4), torch.ones(1, N, 4)))
    return buffer


def _masks() -> ActionMasks:
    # env 0: r0c0 empty, r0c1 holds a HOLDING seed (fossilizable), r0c2 empty
    holding = SlotState(SeedStage.HOLDING, age_epochs=10)
    states = [{"r0c0": None, "r0c1": holding, "r0c2": None}, {"r0c0": None, "r0c1": None, "r0c2": None}]
    return compute_batch_masks(states, slot_config=SLOTS, topology="mlp")


def _result(op: list[int], value: float = 0.5) -> ActionResult:
    actions = {h: torch.zeros(N, dtype=torch.long) for h in SPACE.head_names}
    actions["op"] = torch.tensor(op)
    actions["slot"] = torch.tensor([1, 2])
    actions["blueprint"] = torch.tensor([3, 3])
    log_probs = {h: torch.full((N,), -0.5) for h in SPACE.head_names}
    entropies = {h: torch.zeros(N) for h in SPACE.head_names}
    return ActionResult(actions, log_probs, entropies, torch.full((N,), value), None)


def _obs(fill: float = 0.25) -> Observation:
    return Observation(torch.full((N, F), fill), torch.tensor([[-1, 3, -1], [-1, -1, -1]]))


def _add(buffer: RolloutBuffer, **overrides) -> None:
    kwargs = dict(
        obs=_obs(),
        masks=_masks(),
        result=_result([LifecycleOp.FOSSILIZE, LifecycleOp.GERMINATE]),
        executed_op=torch.tensor([LifecycleOp.FOSSILIZE, LifecycleOp.WAIT]),
        rewards=torch.tensor([1.0, 2.0]),
        terminated=torch.tensor([False, False]),
        truncated=torch.tensor([False, False]),
        active=torch.tensor([True, True]),
    )
    kwargs.update(overrides)
    buffer.add(**kwargs)


def test_stores_op_conditioned_slot_mask_and_executed_op_separately() -> None:
    buffer = _buffer()
    _add(buffer)
    data = buffer.data()
    masks = _masks()
    assert data.masks.slot_by_op is None
    # env 0 sampled FOSSILIZE: only r0c1 (HOLDING) goes with it; env 1 sampled GERMINATE: all empty slots
    assert data.masks.heads["slot"][:, 0].tolist() == [[False, True, False], [True, True, True]]
    assert torch.equal(data.masks.heads["blueprint"][:, 0], masks.heads["blueprint"])
    assert data.actions["op"][:, 0].tolist() == [LifecycleOp.FOSSILIZE, LifecycleOp.GERMINATE]
    assert data.executed_op[:, 0].tolist() == [LifecycleOp.FOSSILIZE, LifecycleOp.WAIT]
    assert data.log_probs["op"][:, 0].tolist() == [-0.5, -0.5]
    assert data.values[:, 0].tolist() == [0.5, 0.5] and data.rewards[:, 0].tolist() == [1.0, 2.0]
    assert data.valid[:, 0].tolist() == [True, True]
    assert data.obs.features.shape == (N, 1, F) and data.obs.blueprint_indices[0, 0].tolist() == [-1, 3, -1]


def test_the_op_conditioned_mask_is_stored_for_the_head_the_space_names() -> None:
    space = ActionSpace(
        head_names=("target", "op"),
        head_sizes=(2, 3),
        op_head="op",
        relevance=((True, True),) * 3,
        placeholders=(0, 0),
        slot_head="target",
    )
    buffer = RolloutBuffer(num_envs=N, num_steps=1, feature_dim=3, num_slots=2, action_space=space)
    buffer.reset(None)
    slot_by_op = torch.tensor([[True, True], [True, False], [False, True]]).expand(N, -1, -1)
    heads = {"target": torch.ones(N, 2, dtype=torch.bool), "op": torch.ones(N, 3, dtype=torch.bool)}
    masks = ActionMasks(heads, slot_by_op)
    actions = {"target": torch.tensor([0, 1]), "op": torch.tensor([1, 2])}
    zeros = {h: torch.zeros(N) for h in space.head_names}
    _add(
        buffer,
        obs=Observation(torch.zeros(N, 3), torch.full((N, 2), -1)),
        masks=masks,
        result=ActionResult(actions, zeros, zeros, torch.zeros(N), None),
    )
    assert buffer.data().masks.heads["target"][:, 0].tolist() == [[True, False], [False, True]]


def test_inactive_steps_become_safe_canonical_padding() -> None:
    buffer = _buffer()
    _add(buffer, active=torch.tensor([True, False]), terminated=torch.tensor([False, True]))
    data = buffer.data()
    for index, head in enumerate(SPACE.head_names):
        row = data.masks.heads[head][1, 0]
        assert row.sum() == 1 and bool(row[SPACE.placeholders[index]]), head
        assert int(data.actions[head][1, 0]) == SPACE.placeholders[index]
        assert float(data.log_probs[head][1, 0]) == 0.0
    assert data.valid[:, 0].tolist() == [True, False]
    assert data.rewards[1, 0] == 0.0 and not data.terminated[1, 0] and data.executed_op[1, 0] == LifecycleOp.WAIT


def test_bootstrap_values_kept_only_for_truncated_steps() -> None:
    buffer = _buffer()
    _add(
        buffer,
        truncated=torch.tensor([True, False]),
        bootstrap_values=torch.tensor([3.0, 7.0]),
    )
    data = buffer.data()
    assert data.bootstrap_values[:, 0].tolist() == [3.0, 0.0] and data.truncated[:, 0].tolist() == [True, False]
    with pytest.raises(ValueError, match="bootstrap"):
        _add(buffer, truncated=torch.tensor([False, True]))


def test_overflow_reset_and_shape_errors() -> None:
    buffer = RolloutBuffer(num_envs=N, num_steps=1, feature_dim=F, num_slots=3, action_space=SPACE)
    with pytest.raises(RuntimeError, match="reset"):
        _add(buffer)
    with pytest.raises(ValueError, match="dim 1"):
        buffer.reset((torch.zeros(1, 3, 4),))
    buffer.reset(None)
    with pytest.raises(ValueError, match="features"):
        _add(buffer, obs=Observation(torch.zeros(N, F + 1), torch.zeros(N, 3, dtype=torch.long)))
    _add(buffer)
    assert buffer.full
    with pytest.raises(RuntimeError, match="full"):
        _add(buffer)
    buffer.reset(None)
    assert buffer.data().num_steps == 0 and not buffer.full


def test_select_takes_rows_and_slices_hidden_on_dim_one() -> None:
    buffer = _buffer()
    _add(buffer, obs=_obs(0.25))
    _add(buffer, obs=_obs(0.75))
    buffer.initial_hidden[0][0, 1] = 9.0  # mark env 1's initial state
    data = buffer.data()
    assert data.num_envs == N and data.num_steps == 2
    picked = data.select(torch.tensor([1]))
    assert picked.num_envs == 1 and picked.obs.features[0, :, 0].tolist() == [0.25, 0.75]
    assert picked.initial_hidden[0].shape == (1, 1, 4) and bool((picked.initial_hidden[0] == 9.0).all())
    assert picked.masks.heads["slot"][0, 0].tolist() == [True, True, True]


def test_env_minibatches_partition_whole_envs_deterministically() -> None:
    groups = env_minibatches(7, 3, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(groups).tolist()) == list(range(7))
    assert sorted(len(g) for g in groups) == [2, 2, 3]
    again = env_minibatches(7, 3, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(groups, again, strict=True))
    with pytest.raises(ValueError, match="num_minibatches"):
        env_minibatches(2, 3, torch.Generator())
