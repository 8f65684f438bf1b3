"""Op-conditioned canonicalisation: irrelevant heads collapse to one canonical action."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from esper.tamiyo.contract import (
    ActionSpace,
    BlueprintAction,
    LifecycleOp,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_action_masks,
    morphogenetic_action_space,
)
from esper.tamiyo.networks.canonical import canonicalise_masks, relevant_for, with_op_slot_mask

SLOTS = SlotConfig.for_count(3)
SPACE = morphogenetic_action_space(SLOTS)


def _masks() -> dict[str, torch.Tensor]:
    states = {"r0c0": None, "r0c1": SlotState(SeedStage.HOLDING, age_epochs=6), "r0c2": None}
    masks = compute_action_masks(states, slot_config=SLOTS, topology="cnn")
    ops = torch.tensor([int(op) for op in LifecycleOp])
    batch = {h: m.expand(len(ops), -1) for h, m in masks.heads.items()}
    return with_op_slot_mask(SPACE, batch, masks.slot_by_op.expand(len(ops), -1, -1), ops)


def test_irrelevant_heads_become_one_hot_and_relevant_heads_are_kept() -> None:
    ops = torch.tensor([int(op) for op in LifecycleOp])
    masks = _masks()
    canonical = canonicalise_masks(SPACE, ops, masks)
    for row, op in enumerate(LifecycleOp):
        for head in SPACE.head_names:
            if SPACE.is_relevant(op, head):
                assert torch.equal(canonical[head][row], masks[head][row]), (op, head)
            else:
                assert canonical[head][row].sum().item() == 1, (op, head)


def test_placeholders_follow_the_contract() -> None:
    ops = torch.tensor([int(LifecycleOp.WAIT), int(LifecycleOp.FOSSILIZE)])
    masks = {h: m[[int(LifecycleOp.WAIT), int(LifecycleOp.FOSSILIZE)]] for h, m in _masks().items()}
    canonical = canonicalise_masks(SPACE, ops, masks)
    # NOOP is never selectable, so the blueprint placeholder falls back to the first valid blueprint.
    assert canonical["blueprint"].float().argmax(-1).tolist() == [int(BlueprintAction.CONV_LIGHT)] * 2
    # WAIT keeps only the first valid slot; FOSSILIZE keeps its slot_by_op row (the HOLDING slot).
    assert canonical["slot"].tolist() == [[True, False, False], [False, True, False]]


def test_wait_keeps_the_first_valid_slot_when_slot_zero_is_disabled() -> None:
    masks = {h: torch.ones(1, n, dtype=torch.bool) for h, n in SPACE.sizes().items()}
    masks["slot"] = torch.tensor([[False, False, True]])
    canonical = canonicalise_masks(SPACE, torch.tensor([int(LifecycleOp.WAIT)]), masks)
    assert canonical["slot"].tolist() == [[False, False, True]]


def test_relevance_is_generic_over_the_action_space() -> None:
    space = ActionSpace(
        head_names=("op", "target"),
        head_sizes=(3, 4),
        op_head="op",
        relevance=((True, False), (True, True), (True, False)),
        placeholders=(0, 2),
    )
    ops = torch.tensor([[0, 1, 2]])
    assert relevant_for(space, "target", ops).tolist() == [[False, True, False]]
    masks = {"op": torch.ones(1, 3, 3, dtype=torch.bool), "target": torch.ones(1, 3, 4, dtype=torch.bool)}
    canonical = canonicalise_masks(space, ops, masks)
    one_hot_at_2 = [False, False, True, False]
    assert canonical["target"][0].tolist() == [one_hot_at_2, [True] * 4, one_hot_at_2]


def test_the_op_conditioned_head_is_the_one_the_space_names() -> None:
    space = ActionSpace(
        head_names=("where", "op"),
        head_sizes=(2, 3),
        op_head="op",
        relevance=((False, True), (True, True), (True, True)),
        placeholders=(0, 0),
        slot_head="where",
    )
    heads = {"where": torch.ones(3, 2, dtype=torch.bool), "op": torch.ones(3, 3, dtype=torch.bool)}
    slot_by_op = torch.tensor([[True, True], [True, False], [False, True]]).expand(3, -1, -1)
    conditioned = with_op_slot_mask(space, heads, slot_by_op, torch.tensor([0, 1, 2]))
    assert conditioned["where"].tolist() == [[True, True], [True, False], [False, True]]
    assert conditioned["op"] is heads["op"]
    no_slot_head = dataclasses.replace(space, slot_head=None)
    with pytest.raises(ValueError, match=r"slot_by_op was given but the action space has no slot head"):
        with_op_slot_mask(no_slot_head, heads, slot_by_op, torch.tensor([0, 1, 2]))
