"""The action space value and the morphogenetic space: heads, enums, value tables, relevance, placeholders."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from esper.tamiyo.contract import (
    ALPHA_CURVES,
    ALPHA_SPEED_TICKS,
    ALPHA_TARGET_VALUES,
    HEAD_NAMES,
    OP_RELEVANT_HEADS,
    STYLE_BLENDS,
    TEMPO_EPOCHS,
    TOPOLOGIES,
    TOPOLOGY_BLUEPRINTS,
    ActionSpace,
    AlphaAlgorithm,
    AlphaCurve,
    AlphaCurveAction,
    AlphaMode,
    AlphaSpeedAction,
    AlphaTargetAction,
    BlueprintAction,
    GerminationStyle,
    LifecycleOp,
    SlotConfig,
    TempoAction,
    morphogenetic_action_space,
    topology_blueprints,
)

Op = LifecycleOp
BP = BlueprintAction

#: Causal relevance per op, written out independently (op is always relevant too).
SPEC_RELEVANCE: dict[LifecycleOp, set[str]] = {
    Op.WAIT: set(),
    Op.GERMINATE: {"slot", "blueprint", "style", "tempo", "alpha_target"},
    Op.SET_ALPHA_TARGET: {"slot", "style", "alpha_target", "alpha_speed", "alpha_curve"},
    Op.PRUNE: {"slot", "alpha_speed", "alpha_curve"},
    Op.FOSSILIZE: {"slot"},
    Op.ADVANCE: {"slot"},
}


def _members(enum: type) -> dict[str, int]:
    return {m.name: int(m) for m in enum}


# --- enums and value tables ------------------------------------------------------------------


def test_enum_members_and_values() -> None:
    assert _members(LifecycleOp) == {
        "WAIT": 0,
        "GERMINATE": 1,
        "SET_ALPHA_TARGET": 2,
        "PRUNE": 3,
        "FOSSILIZE": 4,
        "ADVANCE": 5,
    }
    assert _members(BlueprintAction) == {
        "NOOP": 0,
        "CONV_LIGHT": 1,
        "ATTENTION": 2,
        "NORM": 3,
        "DEPTHWISE": 4,
        "BOTTLENECK": 5,
        "CONV_SMALL": 6,
        "CONV_HEAVY": 7,
        "LORA": 8,
        "LORA_LARGE": 9,
        "MLP_SMALL": 10,
        "MLP": 11,
        "FLEX_ATTENTION": 12,
    }
    assert _members(GerminationStyle) == {"LINEAR_ADD": 0, "LINEAR_MULTIPLY": 1, "SIGMOID_ADD": 2, "GATED_GATE": 3}
    assert _members(TempoAction) == {"FAST": 0, "STANDARD": 1, "SLOW": 2}
    assert _members(AlphaTargetAction) == {"HALF": 0, "SEVENTY": 1, "FULL": 2}
    assert _members(AlphaSpeedAction) == {"INSTANT": 0, "FAST": 1, "MEDIUM": 2, "SLOW": 3}
    assert _members(AlphaCurveAction) == {
        "LINEAR": 0,
        "COSINE": 1,
        "SIGMOID_GENTLE": 2,
        "SIGMOID": 3,
        "SIGMOID_SHARP": 4,
    }
    assert _members(AlphaAlgorithm) == {"ADD": 1, "MULTIPLY": 2, "GATE": 3}
    assert _members(AlphaCurve) == {"LINEAR": 1, "COSINE": 2, "SIGMOID": 3}
    assert _members(AlphaMode) == {"HOLD": 0, "UP": 1, "DOWN": 2}


def test_value_tables() -> None:
    assert TEMPO_EPOCHS == (3, 5, 8)
    assert ALPHA_TARGET_VALUES == (0.5, 0.7, 1.0)
    assert ALPHA_SPEED_TICKS == (0, 3, 5, 8)
    assert ALPHA_CURVES == (
        (AlphaCurve.LINEAR, 12.0),
        (AlphaCurve.COSINE, 12.0),
        (AlphaCurve.SIGMOID, 6.0),
        (AlphaCurve.SIGMOID, 12.0),
        (AlphaCurve.SIGMOID, 24.0),
    )
    assert STYLE_BLENDS == (
        (AlphaCurve.LINEAR, AlphaAlgorithm.ADD),
        (AlphaCurve.LINEAR, AlphaAlgorithm.MULTIPLY),
        (AlphaCurve.SIGMOID, AlphaAlgorithm.ADD),
        (AlphaCurve.LINEAR, AlphaAlgorithm.GATE),
    )


def test_value_tables_align_with_their_enums() -> None:
    assert len(TEMPO_EPOCHS) == len(TempoAction)
    assert len(ALPHA_TARGET_VALUES) == len(AlphaTargetAction)
    assert len(ALPHA_SPEED_TICKS) == len(AlphaSpeedAction)
    assert len(ALPHA_CURVES) == len(AlphaCurveAction)
    assert len(STYLE_BLENDS) == len(GerminationStyle)
    assert TEMPO_EPOCHS[TempoAction.SLOW] == 8
    assert ALPHA_TARGET_VALUES[AlphaTargetAction.SEVENTY] == 0.7
    assert ALPHA_SPEED_TICKS[AlphaSpeedAction.MEDIUM] == 5
    assert ALPHA_CURVES[AlphaCurveAction.SIGMOID_SHARP] == (AlphaCurve.SIGMOID, 24.0)
    assert STYLE_BLENDS[GerminationStyle.GATED_GATE] == (AlphaCurve.LINEAR, AlphaAlgorithm.GATE)


def test_blueprint_string_ids() -> None:
    assert BP.CONV_LIGHT.blueprint_id == "conv_light"
    assert BP.FLEX_ATTENTION.blueprint_id == "flex_attention"
    assert len({b.blueprint_id for b in BlueprintAction}) == 13


# --- topology blueprint sets ------------------------------------------------------------------


def test_topology_blueprint_sets() -> None:
    assert TOPOLOGIES == ("cnn", "mlp", "transformer")
    assert set(topology_blueprints("cnn")) == {
        BP.CONV_LIGHT,
        BP.ATTENTION,
        BP.NORM,
        BP.DEPTHWISE,
        BP.BOTTLENECK,
        BP.CONV_SMALL,
        BP.CONV_HEAVY,
    }
    assert set(topology_blueprints("transformer")) == {
        BP.ATTENTION,
        BP.NORM,
        BP.LORA,
        BP.LORA_LARGE,
        BP.MLP_SMALL,
        BP.MLP,
        BP.FLEX_ATTENTION,
    }
    assert set(topology_blueprints("mlp")) == {BP.ATTENTION, BP.NORM, BP.LORA, BP.LORA_LARGE, BP.MLP_SMALL, BP.MLP}


@pytest.mark.parametrize("topology", ["cnn", "mlp", "transformer"])
def test_topology_sets_never_include_noop_and_have_six_or_seven(topology: str) -> None:
    blueprints = topology_blueprints(topology)
    assert BP.NOOP not in blueprints
    assert 6 <= len(blueprints) <= 7
    assert len(set(blueprints)) == len(blueprints)
    assert blueprints is TOPOLOGY_BLUEPRINTS[topology]


@pytest.mark.parametrize("bad", ["CNN", " cnn", "cnn ", "resnet", "", None, 3])
def test_unknown_topology_raises_with_known_names(bad: object) -> None:
    with pytest.raises(ValueError, match=r"unknown topology .*\['cnn', 'mlp', 'transformer'\]") as info:
        topology_blueprints(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)


# --- the morphogenetic space ----------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 9])
def test_morphogenetic_heads_order_and_sizes(count: int) -> None:
    space = morphogenetic_action_space(SlotConfig.for_count(count))
    assert (
        space.head_names
        == HEAD_NAMES
        == (
            "slot",
            "blueprint",
            "style",
            "tempo",
            "alpha_target",
            "alpha_speed",
            "alpha_curve",
            "op",
        )
    )
    assert space.sizes() == {
        "slot": count,
        "blueprint": 13,
        "style": 4,
        "tempo": 3,
        "alpha_target": 3,
        "alpha_speed": 4,
        "alpha_curve": 5,
        "op": 6,
    }
    assert list(space.sizes()) == list(HEAD_NAMES)
    assert space.head_sizes == (count, 13, 4, 3, 3, 4, 5, 6)
    assert space.size("slot") == count
    assert space.num_heads == 8
    assert space.op_head == "op" and space.op_index == 7 and space.num_ops == 6
    assert space.slot_head == "slot"


def test_default_space_has_three_slots() -> None:
    assert morphogenetic_action_space().size("slot") == 3
    assert morphogenetic_action_space() == morphogenetic_action_space(SlotConfig())


def test_placeholders() -> None:
    space = morphogenetic_action_space()
    assert dict(zip(space.head_names, space.placeholders, strict=True)) == {
        "slot": 0,
        "blueprint": BP.NOOP,
        "style": GerminationStyle.SIGMOID_ADD,
        "tempo": TempoAction.STANDARD,
        "alpha_target": AlphaTargetAction.FULL,
        "alpha_speed": AlphaSpeedAction.INSTANT,
        "alpha_curve": AlphaCurveAction.LINEAR,
        "op": LifecycleOp.WAIT,
    }


def test_relevance_table_per_op_matches_spec() -> None:
    assert {op: set(heads) for op, heads in OP_RELEVANT_HEADS.items()} == SPEC_RELEVANCE
    space = morphogenetic_action_space()
    for op in LifecycleOp:
        relevant = {h for h in HEAD_NAMES if space.is_relevant(op, h)}
        assert relevant == SPEC_RELEVANCE[op] | {"op"}, op.name
        assert space.relevance[op] == tuple(h in relevant for h in HEAD_NAMES)


def test_relevance_table_tensor() -> None:
    space = morphogenetic_action_space()
    table = space.relevance_table()
    assert table.dtype == torch.bool and table.shape == (6, 8)
    assert table[:, space.op_index].all()
    assert table[Op.WAIT].sum().item() == 1
    assert table.sum(dim=1).tolist() == [1, 6, 6, 4, 2, 2]


def test_relevance_masks_any_shape() -> None:
    space = morphogenetic_action_space()
    ops = torch.tensor([[Op.WAIT, Op.GERMINATE, Op.PRUNE], [Op.SET_ALPHA_TARGET, Op.FOSSILIZE, Op.ADVANCE]])
    masks = space.relevance_masks(ops)
    assert list(masks) == list(HEAD_NAMES)
    for head, mask in masks.items():
        assert mask.shape == ops.shape and mask.dtype == torch.bool
        expected = [[head == "op" or head in SPEC_RELEVANCE[Op(int(o))] for o in row] for row in ops.tolist()]
        assert mask.tolist() == expected, head
    assert masks["op"].all()
    assert masks["slot"].tolist() == [[False, True, True], [True, True, True]]
    assert masks["tempo"].tolist() == [[False, True, False], [False, False, False]]
    # int32 ops are accepted too
    assert space.relevance_masks(ops.to(torch.int32))["blueprint"].tolist() == masks["blueprint"].tolist()


def test_canonical_action_prefers_placeholder_when_allowed() -> None:
    space = morphogenetic_action_space()
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    out = space.canonical_action("style", mask)
    assert out.dtype == torch.int64 and out.shape == (2, 4)
    assert (out == GerminationStyle.SIGMOID_ADD).all()


def test_canonical_action_falls_back_to_first_valid_index() -> None:
    space = morphogenetic_action_space()
    # blueprint placeholder NOOP is never valid under a real mask: first valid blueprint instead
    blueprint_mask = torch.zeros(2, 13, dtype=torch.bool)
    blueprint_mask[0, [BP.ATTENTION, BP.NORM]] = True
    blueprint_mask[1, [BP.LORA, BP.MLP]] = True
    assert space.canonical_action("blueprint", blueprint_mask).tolist() == [BP.ATTENTION, BP.LORA]
    # slot placeholder 0 disabled: first enabled slot; enabled: slot 0
    slot_mask = torch.tensor([[False, False, True], [True, True, False], [False, True, True]])
    assert space.canonical_action("slot", slot_mask).tolist() == [2, 0, 1]
    # alpha_target: FULL when allowed, else first valid
    target_mask = torch.tensor([[True, True, False], [False, False, True], [False, True, False]])
    assert space.canonical_action("alpha_target", target_mask).tolist() == [0, 2, 1]


def test_canonical_action_single_row() -> None:
    space = morphogenetic_action_space()
    assert space.canonical_action("tempo", torch.tensor([True, False, True])).item() == 0
    assert space.canonical_action("tempo", torch.tensor([True, True, True])).item() == TempoAction.STANDARD


def test_space_is_frozen_value() -> None:
    space = morphogenetic_action_space()
    with pytest.raises(dataclasses.FrozenInstanceError):
        space.op_head = "slot"  # type: ignore[misc]
    assert hash(space) == hash(morphogenetic_action_space())


# --- a generic (non-morphogenetic) ActionSpace and its validation ----------------------------


def _tiny(**overrides: object) -> ActionSpace:
    kwargs: dict[str, object] = dict(
        head_names=("target", "op"),
        head_sizes=(3, 2),
        op_head="op",
        relevance=((False, True), (True, True)),
        placeholders=(1, 0),
    )
    kwargs.update(overrides)
    return ActionSpace(**kwargs)  # type: ignore[arg-type]


def test_generic_space_works() -> None:
    space = _tiny()
    assert space.slot_head is None and _tiny(slot_head="target").slot_head == "target"
    assert space.num_ops == 2 and space.op_index == 1 and space.num_heads == 2
    assert space.sizes() == {"target": 3, "op": 2}
    masks = space.relevance_masks(torch.tensor([0, 1, 1]))
    assert masks["target"].tolist() == [False, True, True]
    assert masks["op"].tolist() == [True, True, True]
    assert space.canonical_action("target", torch.tensor([[True, True, True], [True, False, False]])).tolist() == [1, 0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"head_names": (), "head_sizes": (), "relevance": (), "placeholders": ()}, "non-empty and unique"),
        ({"head_names": ("op", "op")}, "non-empty and unique"),
        ({"head_sizes": (3,)}, r"head_sizes must give a size >= 1 for each of 2 heads, got \(3,\)"),
        ({"head_sizes": (0, 2)}, r"got \(0, 2\)"),
        ({"op_head": "verb"}, r"op head 'verb' is not one of \('target', 'op'\)"),
        ({"relevance": ((True, True),)}, r"relevance must be \[2 ops\]\[2 heads\]"),
        ({"relevance": ((True,), (True,))}, r"relevance must be \[2 ops\]\[2 heads\]"),
        ({"relevance": ((True, False), (True, True))}, "op head must be relevant to every op"),
        ({"placeholders": (3, 0)}, r"placeholders must be valid indices of each head, got \(3, 0\)"),
        ({"placeholders": (0, -1)}, r"got \(0, -1\)"),
        ({"placeholders": (0,)}, r"got \(0,\)"),
        ({"slot_head": "where"}, r"slot head 'where' is not one of \('target', 'op'\)"),
        ({"slot_head": "op"}, r"the op head 'op' cannot also be the slot head"),
    ],
)
def test_action_space_validation(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _tiny(**overrides)


def test_relevance_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        OP_RELEVANT_HEADS[Op.WAIT] = frozenset({"slot"})  # type: ignore[index]
