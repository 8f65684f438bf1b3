"""Action masks: every masking rule, the batched version, and properties.

Expected values are written from the rules, not derived from the implementation: the hypothesis
tests compare ``compute_action_masks`` with an independent oracle (``_oracle_slot_ops``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from esper.tamiyo.contract import (
    DEFAULT_MIN_PRUNE_AGE,
    HEAD_NAMES,
    ActionMasks,
    AlphaMode,
    AlphaTargetAction,
    BlueprintAction,
    EmptyMaskError,
    GerminationStyle,
    LifecycleOp,
    SeedStage,
    SlotConfig,
    SlotState,
    check_masks_nonempty,
    check_transition,
    compute_action_masks,
    compute_batch_masks,
    morphogenetic_action_space,
    op_conditioned_slot_mask,
    stack_masks,
)

Op = LifecycleOp
S = SeedStage
BP = BlueprintAction
SlotStates = Mapping[str, SlotState | None]

BLOCKING = {S.GERMINATED, S.TRAINING, S.PRUNED, S.EMBARGOED, S.RESETTING}
PRUNABLE = {S.GERMINATED, S.TRAINING, S.BLENDING, S.HOLDING}
ADVANCEABLE = {S.GERMINATED, S.TRAINING, S.BLENDING}
RETARGETABLE = {S.BLENDING, S.HOLDING}
TOPOLOGY_SETS = {
    "cnn": {BP.CONV_LIGHT, BP.ATTENTION, BP.NORM, BP.DEPTHWISE, BP.BOTTLENECK, BP.CONV_SMALL, BP.CONV_HEAVY},
    "mlp": {BP.ATTENTION, BP.NORM, BP.LORA, BP.LORA_LARGE, BP.MLP_SMALL, BP.MLP},
    "transformer": {BP.ATTENTION, BP.NORM, BP.LORA, BP.LORA_LARGE, BP.MLP_SMALL, BP.MLP, BP.FLEX_ATTENTION},
}
OLD = 100  # an age far past any prune limit used here


def seed(stage: SeedStage, age: int = OLD, mode: AlphaMode = AlphaMode.HOLD) -> SlotState:
    return SlotState(stage=int(stage), age_epochs=age, alpha_mode=int(mode))


def empty(count: int = 3) -> dict[str, SlotState | None]:
    return {slot_id: None for slot_id in SlotConfig.for_count(count).slot_ids}


def valid_ops(masks: ActionMasks) -> set[LifecycleOp]:
    return {Op(i) for i, ok in enumerate(masks["op"].tolist()) if ok}


def _slot_by_op(masks: ActionMasks) -> torch.Tensor:
    assert masks.slot_by_op is not None
    return masks.slot_by_op


def slots_for(masks: ActionMasks, op: LifecycleOp) -> list[bool]:
    return _slot_by_op(masks)[op].tolist()


# --- defaults, shapes, always-on heads -------------------------------------------------------


def test_all_empty_default_config() -> None:
    masks = compute_action_masks(empty())
    assert list(masks.heads) == list(HEAD_NAMES)
    sizes = morphogenetic_action_space().sizes()
    for head, mask in masks.heads.items():
        assert mask.dtype == torch.bool and mask.shape == (sizes[head],), head
    assert masks.slot_by_op is not None
    assert masks.slot_by_op.dtype == torch.bool and masks.slot_by_op.shape == (6, 3)
    assert valid_ops(masks) == {Op.WAIT, Op.GERMINATE}
    assert masks["slot"].tolist() == [True, True, True]
    assert slots_for(masks, Op.GERMINATE) == [True, True, True]
    for op in (Op.SET_ALPHA_TARGET, Op.PRUNE, Op.FOSSILIZE, Op.ADVANCE):
        assert slots_for(masks, op) == [False, False, False]
    for head in ("style", "tempo", "alpha_target", "alpha_speed", "alpha_curve"):
        assert masks[head].all(), head
    assert {i for i, ok in enumerate(masks["blueprint"].tolist()) if ok} == TOPOLOGY_SETS["cnn"]
    assert DEFAULT_MIN_PRUNE_AGE == 3


def test_wait_always_valid_and_its_slot_row_is_the_slot_mask() -> None:
    states = {"r0c0": seed(S.FOSSILIZED), "r0c1": seed(S.FOSSILIZED), "r0c2": None}
    masks = compute_action_masks(states, enabled_slots=["r0c0", "r0c1"])
    assert valid_ops(masks) == {Op.WAIT}
    assert slots_for(masks, Op.WAIT) == masks["slot"].tolist() == [True, True, False]


@pytest.mark.parametrize("mode", list(AlphaMode))
@pytest.mark.parametrize("stage", list(SeedStage))
def test_tempo_speed_curve_always_all_valid(stage: SeedStage, mode: AlphaMode) -> None:
    masks = compute_action_masks({"r0c0": seed(stage, mode=mode)}, slot_config=SlotConfig.for_count(1))
    for head in ("tempo", "alpha_speed", "alpha_curve"):
        assert masks[head].all(), head


# --- per-stage table -------------------------------------------------------------------------

#: Ops the mask allows on a lone slot holding an old, idle seed, with auto-advance off.
PER_STAGE_OPS: dict[SeedStage, set[LifecycleOp]] = {
    S.UNKNOWN: set(),
    S.DORMANT: set(),
    S.GERMINATED: {Op.ADVANCE, Op.PRUNE},
    S.TRAINING: {Op.ADVANCE, Op.PRUNE},
    S.BLENDING: {Op.ADVANCE, Op.PRUNE, Op.SET_ALPHA_TARGET},
    S.HOLDING: {Op.FOSSILIZE, Op.PRUNE, Op.SET_ALPHA_TARGET},
    S.FOSSILIZED: set(),
    S.PRUNED: set(),
    S.EMBARGOED: set(),
    S.RESETTING: set(),
}


@pytest.mark.parametrize("stage", list(SeedStage), ids=lambda s: s.name)
def test_per_stage_ops_on_a_single_slot(stage: SeedStage) -> None:
    masks = compute_action_masks({"r0c0": seed(stage)}, slot_config=SlotConfig.for_count(1), auto_advance=False)
    assert valid_ops(masks) == PER_STAGE_OPS[stage] | {Op.WAIT}
    for op in Op:
        if op is not Op.WAIT:
            assert slots_for(masks, op) == [op in PER_STAGE_OPS[stage]], op.name


@pytest.mark.parametrize("stage", list(SeedStage), ids=lambda s: s.name)
def test_per_stage_ops_target_only_their_slot(stage: SeedStage) -> None:
    """The seed sits in the middle of 5 slots, the others are fossilized: ops point at slot 2 only."""
    states: dict[str, SlotState | None] = {s: seed(S.FOSSILIZED) for s in SlotConfig.for_count(5).slot_ids}
    states["r0c2"] = seed(stage)
    masks = compute_action_masks(states, slot_config=SlotConfig.for_count(5), auto_advance=False)
    for op in PER_STAGE_OPS[stage]:
        assert slots_for(masks, op) == [False, False, True, False, False], op.name


# --- germination ---------------------------------------------------------------------------


@pytest.mark.parametrize("other_stage", list(SeedStage), ids=lambda s: s.name)
def test_germination_block_matrix(other_stage: SeedStage) -> None:
    """One empty slot plus a seed at ``other_stage`` in another enabled slot: D3 decides GERMINATE."""
    states = {"r0c0": None, "r0c1": seed(other_stage), "r0c2": seed(S.FOSSILIZED)}
    masks = compute_action_masks(states)
    blocked = other_stage in BLOCKING
    assert (Op.GERMINATE in valid_ops(masks)) is not blocked
    assert slots_for(masks, Op.GERMINATE) == ([False, False, False] if blocked else [True, False, False])


@pytest.mark.parametrize("other_stage", sorted(BLOCKING), ids=lambda s: s.name)
@pytest.mark.parametrize("mode", list(AlphaMode), ids=lambda m: m.name)
@pytest.mark.parametrize("age", [0, OLD])
def test_germination_block_ignores_age_and_alpha_mode(other_stage: SeedStage, mode: AlphaMode, age: int) -> None:
    masks = compute_action_masks({"r0c0": None, "r0c1": seed(other_stage, age, mode), "r0c2": None})
    assert Op.GERMINATE not in valid_ops(masks)


def test_scaffolding_blending_holding_fossilized_do_not_block() -> None:
    states = {"r0c0": seed(S.BLENDING), "r0c1": seed(S.HOLDING), "r0c2": None}
    masks = compute_action_masks(states, slot_config=SlotConfig(("r0c0", "r0c1", "r0c2")))
    assert slots_for(masks, Op.GERMINATE) == [False, False, True]


def test_blocking_seed_in_a_disabled_slot_does_not_block() -> None:
    """D3 (one seed incubating at a time) looks at enabled slots only."""
    states = {"r0c0": None, "r0c1": seed(S.TRAINING), "r0c2": None}
    masks = compute_action_masks(states, enabled_slots=["r0c0", "r0c2"])
    assert slots_for(masks, Op.GERMINATE) == [True, False, True]


def test_germinate_needs_an_empty_enabled_slot() -> None:
    full = {s: seed(S.FOSSILIZED) for s in ("r0c0", "r0c1", "r0c2")}
    assert Op.GERMINATE not in valid_ops(compute_action_masks(full))
    # the only empty slot is disabled
    states = {"r0c0": seed(S.HOLDING), "r0c1": seed(S.FOSSILIZED), "r0c2": None}
    masks = compute_action_masks(states, enabled_slots=["r0c0", "r0c1"])
    assert Op.GERMINATE not in valid_ops(masks)
    assert slots_for(masks, Op.GERMINATE) == [False, False, False]


def test_dormant_slot_state_is_not_empty() -> None:
    """Only ``None`` means empty; a reported DORMANT seed is not a germination target."""
    masks = compute_action_masks({"r0c0": seed(S.DORMANT)}, slot_config=SlotConfig.for_count(1))
    assert valid_ops(masks) == {Op.WAIT}


@pytest.mark.parametrize(
    ("total_seeds", "max_seeds", "allowed"),
    [
        (0, 0, True),
        (1000, 0, True),  # 0 = unlimited
        (0, 1, True),
        (1, 1, False),
        (1, 2, True),
        (2, 2, False),
        (3, 2, False),
    ],
)
def test_seed_limit(total_seeds: int, max_seeds: int, allowed: bool) -> None:
    masks = compute_action_masks(empty(), total_seeds=total_seeds, max_seeds=max_seeds)
    assert (Op.GERMINATE in valid_ops(masks)) is allowed
    assert slots_for(masks, Op.GERMINATE) == [allowed] * 3


def test_seed_limit_does_not_touch_other_ops() -> None:
    states = {"r0c0": seed(S.HOLDING), "r0c1": None, "r0c2": None}
    masks = compute_action_masks(states, total_seeds=1, max_seeds=1)
    assert valid_ops(masks) == {Op.WAIT, Op.FOSSILIZE, Op.PRUNE, Op.SET_ALPHA_TARGET}


# --- prune ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", sorted(PRUNABLE), ids=lambda s: s.name)
@pytest.mark.parametrize("limit", [0, 1, 3, 5])
def test_min_prune_age_boundary(stage: SeedStage, limit: int) -> None:
    config = SlotConfig.for_count(1)
    at_limit = compute_action_masks({"r0c0": seed(stage, age=limit)}, slot_config=config, min_prune_age=limit)
    assert slots_for(at_limit, Op.PRUNE) == [True]
    assert Op.PRUNE in valid_ops(at_limit)
    if limit > 0:
        below = compute_action_masks({"r0c0": seed(stage, age=limit - 1)}, slot_config=config, min_prune_age=limit)
        assert slots_for(below, Op.PRUNE) == [False]
        assert Op.PRUNE not in valid_ops(below)


def test_default_min_prune_age_boundary() -> None:
    config = SlotConfig.for_count(1)
    assert slots_for(compute_action_masks({"r0c0": seed(S.TRAINING, age=3)}, slot_config=config), Op.PRUNE) == [True]
    assert slots_for(compute_action_masks({"r0c0": seed(S.TRAINING, age=2)}, slot_config=config), Op.PRUNE) == [False]


@pytest.mark.parametrize("stage", sorted(PRUNABLE), ids=lambda s: s.name)
@pytest.mark.parametrize("mode", [AlphaMode.UP, AlphaMode.DOWN], ids=lambda m: m.name)
def test_prune_needs_idle_alpha_controller(stage: SeedStage, mode: AlphaMode) -> None:
    config = SlotConfig.for_count(1)
    ramping = compute_action_masks({"r0c0": seed(stage, mode=mode)}, slot_config=config)
    assert slots_for(ramping, Op.PRUNE) == [False]
    idle = compute_action_masks({"r0c0": seed(stage, mode=AlphaMode.HOLD)}, slot_config=config)
    assert slots_for(idle, Op.PRUNE) == [True]


@pytest.mark.parametrize("stage", sorted(set(SeedStage) - PRUNABLE), ids=lambda s: s.name)
def test_non_prunable_stages_never_prune(stage: SeedStage) -> None:
    masks = compute_action_masks({"r0c0": seed(stage)}, slot_config=SlotConfig.for_count(1), min_prune_age=0)
    assert slots_for(masks, Op.PRUNE) == [False]


def test_prune_slot_rows_pick_eligible_slots_only() -> None:
    states = {
        "r0c0": seed(S.HOLDING, age=3),
        "r0c1": seed(S.BLENDING, age=2),  # too young
        "r0c2": seed(S.HOLDING, age=9, mode=AlphaMode.DOWN),  # ramping
        "r0c3": seed(S.FOSSILIZED, age=9),
        "r0c4": seed(S.BLENDING, age=4),
    }
    masks = compute_action_masks(states, slot_config=SlotConfig.for_count(5), min_prune_age=3)
    assert slots_for(masks, Op.PRUNE) == [True, False, False, False, True]


# --- retarget, fossilize, advance ------------------------------------------------------------


@pytest.mark.parametrize("stage", list(SeedStage), ids=lambda s: s.name)
@pytest.mark.parametrize("mode", list(AlphaMode), ids=lambda m: m.name)
def test_set_alpha_target_needs_blending_or_holding_and_idle(stage: SeedStage, mode: AlphaMode) -> None:
    masks = compute_action_masks({"r0c0": seed(stage, age=0, mode=mode)}, slot_config=SlotConfig.for_count(1))
    expected = stage in RETARGETABLE and mode is AlphaMode.HOLD
    assert slots_for(masks, Op.SET_ALPHA_TARGET) == [expected]
    assert (Op.SET_ALPHA_TARGET in valid_ops(masks)) is expected


@pytest.mark.parametrize("stage", list(SeedStage), ids=lambda s: s.name)
def test_fossilize_only_from_holding(stage: SeedStage) -> None:
    masks = compute_action_masks({"r0c0": seed(stage, age=0)}, slot_config=SlotConfig.for_count(1))
    assert slots_for(masks, Op.FOSSILIZE) == [stage is S.HOLDING]


def test_fossilize_ignores_alpha_mode() -> None:
    masks = compute_action_masks({"r0c0": seed(S.HOLDING, mode=AlphaMode.UP)}, slot_config=SlotConfig.for_count(1))
    assert valid_ops(masks) == {Op.WAIT, Op.FOSSILIZE}


@pytest.mark.parametrize("stage", list(SeedStage), ids=lambda s: s.name)
@pytest.mark.parametrize("auto_advance", [True, False])
def test_advance_respects_auto_advance(stage: SeedStage, auto_advance: bool) -> None:
    masks = compute_action_masks(
        {"r0c0": seed(stage, age=0)}, slot_config=SlotConfig.for_count(1), auto_advance=auto_advance
    )
    expected = not auto_advance and stage in ADVANCEABLE
    assert slots_for(masks, Op.ADVANCE) == [expected]
    assert (Op.ADVANCE in valid_ops(masks)) is expected


def test_auto_advance_is_on_by_default() -> None:
    masks = compute_action_masks({"r0c0": seed(S.TRAINING)}, slot_config=SlotConfig.for_count(1))
    assert Op.ADVANCE not in valid_ops(masks)


# --- style / alpha_target restriction --------------------------------------------------------


def _restricted(masks: ActionMasks) -> bool:
    style_only = masks["style"].tolist() == [i == GerminationStyle.SIGMOID_ADD for i in range(4)]
    target_only = masks["alpha_target"].tolist() == [i == AlphaTargetAction.FULL for i in range(3)]
    assert style_only == target_only
    if not style_only:
        assert masks["style"].all() and masks["alpha_target"].all()
    return style_only


@pytest.mark.parametrize(
    ("states", "kwargs", "restricted"),
    [
        ({"r0c0": None, "r0c1": None, "r0c2": None}, {}, False),  # germinate possible
        ({"r0c0": None, "r0c1": None, "r0c2": None}, {"max_seeds": 1, "total_seeds": 1}, True),  # limit hit
        ({"r0c0": seed(S.TRAINING), "r0c1": None, "r0c2": None}, {}, True),  # D3 block, nothing retargetable
        ({"r0c0": seed(S.FOSSILIZED), "r0c1": seed(S.FOSSILIZED), "r0c2": seed(S.FOSSILIZED)}, {}, True),
        ({"r0c0": seed(S.BLENDING), "r0c1": seed(S.TRAINING), "r0c2": None}, {}, False),  # retarget possible
        ({"r0c0": seed(S.HOLDING, mode=AlphaMode.UP), "r0c1": seed(S.TRAINING), "r0c2": None}, {}, True),
        ({"r0c0": seed(S.HOLDING), "r0c1": None, "r0c2": None}, {"max_seeds": 1, "total_seeds": 1}, False),
        ({"r0c0": seed(S.PRUNED), "r0c1": None, "r0c2": None}, {}, True),
    ],
)
def test_style_and_alpha_target_restricted_when_neither_germinate_nor_retarget(
    states: SlotStates, kwargs: dict[str, Any], restricted: bool
) -> None:
    masks = compute_action_masks(states, **kwargs)
    assert _restricted(masks) is restricted
    possible = bool(masks["op"][Op.GERMINATE] or masks["op"][Op.SET_ALPHA_TARGET])
    assert restricted is not possible


# --- blueprints per topology -----------------------------------------------------------------


@pytest.mark.parametrize("topology", ["cnn", "mlp", "transformer"])
@pytest.mark.parametrize("states", [empty(), {"r0c0": seed(S.TRAINING), "r0c1": seed(S.FOSSILIZED), "r0c2": None}])
def test_blueprint_mask_per_topology(topology: str, states: SlotStates) -> None:
    masks = compute_action_masks(states, topology=topology)
    valid = {BP(i) for i, ok in enumerate(masks["blueprint"].tolist()) if ok}
    assert valid == TOPOLOGY_SETS[topology]
    assert not masks["blueprint"][BP.NOOP]


# --- slot counts and enabled subsets ---------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 9])
def test_slot_counts(count: int) -> None:
    config = SlotConfig.for_count(count)
    states: dict[str, SlotState | None] = empty(count)
    states[config.slot_ids[-1]] = seed(S.HOLDING)
    masks = compute_action_masks(states, slot_config=config)
    assert masks["slot"].shape == (count,) and masks["slot"].all()
    assert masks.slot_by_op is not None and masks.slot_by_op.shape == (6, count)
    last = [False] * (count - 1) + [True]
    assert slots_for(masks, Op.FOSSILIZE) == last
    assert slots_for(masks, Op.PRUNE) == last
    assert slots_for(masks, Op.SET_ALPHA_TARGET) == last
    assert slots_for(masks, Op.GERMINATE) == [True] * (count - 1) + [False]
    expected_ops = {Op.WAIT, Op.FOSSILIZE, Op.PRUNE, Op.SET_ALPHA_TARGET} | ({Op.GERMINATE} if count > 1 else set())
    assert valid_ops(masks) == expected_ops
    check_masks_nonempty(masks)


@pytest.mark.parametrize(
    "enabled",
    [["r0c0"], ["r0c4"], ["r0c1", "r0c3"], ["r0c3", "r0c1"], ["r0c0", "r0c1", "r0c2", "r0c3", "r0c4"]],
)
def test_enabled_slot_subsets(enabled: list[str]) -> None:
    config = SlotConfig.for_count(5)
    # every slot holds a fossilize-able seed; only enabled slots may be targeted
    states = {s: seed(S.HOLDING) for s in config.slot_ids}
    masks = compute_action_masks(states, slot_config=config, enabled_slots=enabled)
    expected = [s in enabled for s in config.slot_ids]
    assert masks["slot"].tolist() == expected
    assert slots_for(masks, Op.WAIT) == expected
    assert slots_for(masks, Op.FOSSILIZE) == expected
    assert masks.slot_by_op is not None
    assert not (masks.slot_by_op & ~masks["slot"]).any()


def test_disabled_slots_need_no_state() -> None:
    config = SlotConfig.for_count(3)
    masks = compute_action_masks({"r0c1": None}, slot_config=config, enabled_slots=["r0c1"])
    assert masks["slot"].tolist() == [False, True, False]
    assert slots_for(masks, Op.GERMINATE) == [False, True, False]


def test_custom_slot_order_is_respected() -> None:
    config = SlotConfig(("r1c0", "r0c0"))
    masks = compute_action_masks({"r1c0": seed(S.HOLDING), "r0c0": None}, slot_config=config)
    assert slots_for(masks, Op.FOSSILIZE) == [True, False]
    assert slots_for(masks, Op.GERMINATE) == [False, True]


# --- invalid input ---------------------------------------------------------------------------


def test_no_enabled_slot_raises() -> None:
    with pytest.raises(ValueError, match="enabled_slots is empty"):
        compute_action_masks(empty(), enabled_slots=[])


def test_unknown_enabled_slot_raises() -> None:
    with pytest.raises(ValueError, match=r"enabled slot 'r0c7' is not in the slot config \['r0c0', 'r0c1', 'r0c2'\]"):
        compute_action_masks({**empty(), "r0c7": None}, enabled_slots=["r0c0", "r0c7"])


def test_missing_slot_state_raises() -> None:
    with pytest.raises(ValueError, match="slot_states has no entry for enabled slot 'r0c2'"):
        compute_action_masks({"r0c0": None, "r0c1": None})


@pytest.mark.parametrize("topology", ["CNN", "cnn ", "vit", ""])
def test_unknown_topology_raises(topology: str) -> None:
    with pytest.raises(ValueError, match=f"unknown topology {topology!r}"):
        compute_action_masks(empty(), topology=topology)


def test_retired_stage_value_raises() -> None:
    with pytest.raises(ValueError, match="5"):
        compute_action_masks({"r0c0": SlotState(stage=5)}, slot_config=SlotConfig.for_count(1))


# --- batched masks -----------------------------------------------------------------------------

BATCH: list[SlotStates] = [
    empty(),
    {"r0c0": seed(S.TRAINING, age=1), "r0c1": None, "r0c2": None},
    {"r0c0": seed(S.HOLDING), "r0c1": seed(S.BLENDING, mode=AlphaMode.UP), "r0c2": None},
    {"r0c0": seed(S.FOSSILIZED), "r0c1": seed(S.FOSSILIZED), "r0c2": seed(S.EMBARGOED)},
]


def test_batch_equals_stacked_singles() -> None:
    totals = [0, 3, 1, 2]
    batch = compute_batch_masks(
        BATCH, total_seeds=totals, topology="mlp", max_seeds=3, min_prune_age=2, auto_advance=False
    )
    singles = [
        compute_action_masks(s, total_seeds=n, topology="mlp", max_seeds=3, min_prune_age=2, auto_advance=False)
        for s, n in zip(BATCH, totals, strict=True)
    ]
    assert list(batch.heads) == list(HEAD_NAMES)
    for head in HEAD_NAMES:
        assert batch[head].shape[0] == 4
        assert torch.equal(batch[head], torch.stack([m[head] for m in singles])), head
    assert _slot_by_op(batch).shape == (4, 6, 3)
    assert torch.equal(_slot_by_op(batch), torch.stack([_slot_by_op(m) for m in singles]))
    # env 1 hit the seed limit, env 0 did not
    assert batch["op"][:, Op.GERMINATE].tolist() == [True, False, True, False]


def test_batch_without_total_seeds_means_zero() -> None:
    batch = compute_batch_masks([empty(), empty()], max_seeds=1)
    assert batch["op"][:, Op.GERMINATE].tolist() == [True, True]


def test_batch_errors() -> None:
    with pytest.raises(ValueError, match="at least one environment"):
        compute_batch_masks([])
    with pytest.raises(ValueError, match="total_seeds has 1 entries for 2 environments"):
        compute_batch_masks([empty(), empty()], total_seeds=[0])
    with pytest.raises(ValueError, match="enabled_slots is empty"):
        compute_batch_masks([empty()], enabled_slots=[])


def test_stack_masks_keeps_missing_slot_by_op() -> None:
    single = compute_action_masks(empty())
    plain = ActionMasks(dict(single.heads), None)
    stacked = stack_masks([plain, plain])
    assert stacked.slot_by_op is None
    assert stacked["op"].shape == (2, 6)


def test_op_conditioned_slot_mask() -> None:
    batch = compute_batch_masks(BATCH)
    assert batch.slot_by_op is not None
    ops = torch.tensor([Op.GERMINATE, Op.PRUNE, Op.FOSSILIZE, Op.WAIT])
    out = op_conditioned_slot_mask(batch.slot_by_op, ops)
    assert out.dtype == torch.bool and out.shape == (4, 3)
    assert out.tolist() == [
        [True, True, True],  # germinate anywhere
        [False, False, False],  # age 1 < 3: no prune
        [True, False, False],  # holding seed in r0c0
        [True, True, True],  # WAIT row = slot mask
    ]
    for b, op in enumerate(ops.tolist()):
        assert torch.equal(out[b], batch.slot_by_op[b, op])
    # int32 ops work the same
    assert torch.equal(op_conditioned_slot_mask(batch.slot_by_op, ops.to(torch.int32)), out)


def test_action_masks_to_and_getitem() -> None:
    masks = compute_action_masks(empty())
    moved = masks.to("cpu")
    assert torch.equal(moved["op"], masks.heads["op"])
    assert torch.equal(_slot_by_op(moved), _slot_by_op(masks))
    assert ActionMasks(dict(masks.heads)).to("cpu").slot_by_op is None


def test_check_masks_nonempty_raises_naming_the_head() -> None:
    batch = compute_batch_masks([empty(), empty()])
    check_masks_nonempty(batch)
    heads = dict(batch.heads)
    heads["tempo"] = heads["tempo"].clone()
    heads["tempo"][1] = False
    with pytest.raises(EmptyMaskError, match="'tempo'"):
        check_masks_nonempty(ActionMasks(heads, batch.slot_by_op))
    assert issubclass(EmptyMaskError, RuntimeError)


# --- properties --------------------------------------------------------------------------------

SLOT_COUNTS = [1, 2, 3, 5, 9]


@dataclass(frozen=True)
class Scenario:
    """One random call of ``compute_action_masks``."""

    slot_states: dict[str, SlotState | None]
    slot_config: SlotConfig
    enabled_slots: list[str]
    topology: str
    total_seeds: int
    max_seeds: int
    min_prune_age: int
    auto_advance: bool

    def options(self) -> dict[str, Any]:
        """Keyword arguments shared by every env of a batch (all but the states and the seed count)."""
        return {
            "slot_config": self.slot_config,
            "enabled_slots": self.enabled_slots,
            "topology": self.topology,
            "max_seeds": self.max_seeds,
            "min_prune_age": self.min_prune_age,
            "auto_advance": self.auto_advance,
        }

    def masks(self) -> ActionMasks:
        return compute_action_masks(self.slot_states, total_seeds=self.total_seeds, **self.options())


@st.composite
def scenarios(draw: st.DrawFn, count: int | None = None) -> Scenario:
    n = draw(st.sampled_from(SLOT_COUNTS)) if count is None else count
    config = SlotConfig.for_count(n)
    seeds = st.builds(
        SlotState,
        stage=st.sampled_from([int(s) for s in SeedStage]),
        age_epochs=st.integers(0, 8),
        alpha_mode=st.sampled_from([int(m) for m in AlphaMode]),
    )
    return Scenario(
        slot_states={slot_id: draw(st.none() | seeds) for slot_id in config.slot_ids},
        slot_config=config,
        enabled_slots=draw(st.lists(st.sampled_from(config.slot_ids), min_size=1, max_size=n, unique=True)),
        topology=draw(st.sampled_from(["cnn", "mlp", "transformer"])),
        total_seeds=draw(st.integers(0, 4)),
        max_seeds=draw(st.integers(0, 3)),
        min_prune_age=draw(st.integers(0, 6)),
        auto_advance=draw(st.booleans()),
    )


def _oracle_slot_ops(sc: Scenario) -> dict[LifecycleOp, list[bool]]:
    """Per-op slot validity, written out by hand."""
    enabled_states = [sc.slot_states[s] for s in sc.enabled_slots]
    blocked = any(state is not None and S(state.stage) in BLOCKING for state in enabled_states)
    limit_hit = sc.max_seeds > 0 and sc.total_seeds >= sc.max_seeds
    out: dict[LifecycleOp, list[bool]] = {op: [] for op in Op}
    for slot_id in sc.slot_config.slot_ids:
        on = slot_id in sc.enabled_slots
        state = sc.slot_states[slot_id] if on else None
        stage = None if state is None else S(state.stage)
        idle = state is not None and state.alpha_mode == AlphaMode.HOLD
        old_enough = state is not None and state.age_epochs >= sc.min_prune_age
        out[Op.WAIT].append(on)
        out[Op.GERMINATE].append(on and state is None and not blocked and not limit_hit)
        out[Op.ADVANCE].append(not sc.auto_advance and stage in ADVANCEABLE)
        out[Op.FOSSILIZE].append(stage is S.HOLDING)
        out[Op.PRUNE].append(stage in PRUNABLE and idle and old_enough)
        out[Op.SET_ALPHA_TARGET].append(stage in RETARGETABLE and idle)
    return out


@given(scenario=scenarios())
def test_property_masks_match_spec_oracle(scenario: Scenario) -> None:
    masks = scenario.masks()
    expected = _oracle_slot_ops(scenario)
    for op in Op:
        assert slots_for(masks, op) == expected[op], op.name


@given(scenario=scenarios())
def test_property_every_head_row_has_a_valid_action(scenario: Scenario) -> None:
    masks = scenario.masks()
    for head, mask in masks.heads.items():
        assert mask.any(), head
    assert masks["op"][Op.WAIT]
    check_masks_nonempty(masks)


@given(scenario=scenarios())
def test_property_valid_ops_and_slot_by_op_agree(scenario: Scenario) -> None:
    """An op is valid iff some slot goes with it; no op ever targets a disabled slot."""
    masks = scenario.masks()
    assert masks["op"].tolist() == _slot_by_op(masks).any(dim=1).tolist()
    assert not (_slot_by_op(masks) & ~masks["slot"]).any()
    assert not masks["blueprint"][BP.NOOP]


@given(count=st.sampled_from(SLOT_COUNTS), data=st.data())
def test_property_batch_equals_stacked_singles(count: int, data: st.DataObject) -> None:
    options = data.draw(scenarios(count)).options()
    envs = data.draw(st.lists(scenarios(count), min_size=1, max_size=4))
    states = [e.slot_states for e in envs]
    totals = [e.total_seeds for e in envs]
    batch = compute_batch_masks(states, total_seeds=totals, **options)
    singles = [compute_action_masks(s, total_seeds=n, **options) for s, n in zip(states, totals, strict=True)]
    for head in HEAD_NAMES:
        assert torch.equal(batch[head], torch.stack([m[head] for m in singles])), head
    assert torch.equal(_slot_by_op(batch), torch.stack([_slot_by_op(m) for m in singles]))
    check_masks_nonempty(batch)
    ops = data.draw(st.lists(st.sampled_from(list(Op)), min_size=len(envs), max_size=len(envs)))
    conditioned = op_conditioned_slot_mask(_slot_by_op(batch), torch.tensor(ops))
    for b, op in enumerate(ops):
        assert conditioned[b].tolist() == slots_for(singles[b], op)


#: Where each stage-changing op takes the seed in its slot (GERMINATE starts from a DORMANT slot).
OP_TARGET = {Op.GERMINATE: S.GERMINATED, Op.PRUNE: S.PRUNED, Op.FOSSILIZE: S.FOSSILIZED}
#: ADVANCE (or the environment's auto-advance) moves a seed one step along the happy path.
NEXT_STAGE = {S.GERMINATED: S.TRAINING, S.TRAINING: S.BLENDING, S.BLENDING: S.HOLDING}
#: The environment's clean-up of a removed seed, one step per epoch; None is an empty slot again.
CLEANUP = {S.PRUNED: S.EMBARGOED, S.EMBARGOED: S.RESETTING, S.RESETTING: S.DORMANT}


@given(count=st.sampled_from([1, 2, 3]), auto_advance=st.booleans(), max_seeds=st.integers(0, 3), data=st.data())
def test_property_mask_driven_walks_only_make_legal_transitions(
    count: int, auto_advance: bool, max_seeds: int, data: st.DataObject
) -> None:
    """Random episodes that only take actions the masks allow, with the environment's own moves
    (auto-advance, failure clean-up) in between: every stage change passes ``check_transition``,
    the seed limit holds, and at most one seed is developing (GERMINATED/TRAINING) at a time."""
    config = SlotConfig.for_count(count)
    stages: dict[str, SeedStage | None] = dict.fromkeys(config.slot_ids)
    ages = dict.fromkeys(config.slot_ids, 0)
    total_seeds = 0
    for _ in range(25):
        states = {
            sid: None
            if stage is None
            else SlotState(int(stage), ages[sid], int(data.draw(st.sampled_from(list(AlphaMode)))))
            for sid, stage in stages.items()
        }
        masks = compute_action_masks(
            states, slot_config=config, total_seeds=total_seeds, max_seeds=max_seeds, auto_advance=auto_advance
        )
        check_masks_nonempty(masks)
        op = data.draw(st.sampled_from(sorted(valid_ops(masks))))
        slot_id = data.draw(
            st.sampled_from([sid for sid, ok in zip(config.slot_ids, slots_for(masks, op), strict=True) if ok])
        )
        stage = stages[slot_id]
        if op is Op.GERMINATE:
            assert stage is None
            stages[slot_id], ages[slot_id] = check_transition(S.DORMANT, OP_TARGET[op]), 0
            total_seeds += 1
        elif op is Op.ADVANCE:
            assert stage is not None
            stages[slot_id] = check_transition(stage, NEXT_STAGE[stage])
        elif op in OP_TARGET:
            assert stage is not None
            stages[slot_id] = check_transition(stage, OP_TARGET[op])
        for sid, current in stages.items():  # the environment's end-of-epoch moves
            ages[sid] += 1
            if current in CLEANUP:
                moved = check_transition(current, CLEANUP[current])
                stages[sid] = None if moved is S.DORMANT else moved
            elif auto_advance and current in NEXT_STAGE and data.draw(st.booleans()):
                stages[sid] = check_transition(current, NEXT_STAGE[current])
        assert max_seeds == 0 or total_seeds <= max_seeds
        assert sum(s in (S.GERMINATED, S.TRAINING) for s in stages.values()) <= 1
