"""Observation layout: named fields tile the vector exactly; sizes; symlog/symexp; the UNKNOWN sentinel."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from esper.tamiyo.contract import (
    BASE_FEATURE_SIZE,
    BASE_FIELDS,
    EPISODE_FIELDS,
    HISTORY_LENGTH,
    SLOT_FEATURE_SIZE,
    SLOT_FIELDS,
    STAGE_ORDER,
    SYMLOG_SCALE,
    UNKNOWN,
    LifecycleOp,
    Observation,
    ObservationLayout,
    SlotConfig,
    episode_feature_size,
    feature_size,
    symexp,
    symlog,
)

SLOT_COUNTS = [1, 2, 3, 5, 9]


def test_block_sizes_and_constants() -> None:
    assert BASE_FEATURE_SIZE == 23
    assert SLOT_FEATURE_SIZE == 31
    assert HISTORY_LENGTH == 5
    assert UNKNOWN == -1.0
    assert SYMLOG_SCALE == 7.0


@pytest.mark.parametrize("count", SLOT_COUNTS)
def test_feature_size(count: int) -> None:
    assert feature_size(count) == 23 + 31 * count
    assert ObservationLayout(SlotConfig.for_count(count)).size == 23 + 31 * count


def test_feature_size_of_default_three_slots_is_116() -> None:
    assert feature_size(3) == 116
    assert ObservationLayout().size == 116
    assert ObservationLayout().num_slots == 3


@pytest.mark.parametrize("count", [0, -2])
def test_feature_size_rejects_non_positive(count: int) -> None:
    with pytest.raises(ValueError, match=f"num_slots must be >= 1, got {count}"):
        feature_size(count)


@pytest.mark.parametrize("count", SLOT_COUNTS)
def test_fields_cover_the_vector_exactly_once(count: int) -> None:
    layout = ObservationLayout(SlotConfig.for_count(count))
    fields = layout.fields()
    assert len(fields) == len(BASE_FIELDS) + count * len(SLOT_FIELDS)
    hits = [0] * layout.size
    for name, rng in fields.items():
        assert rng.step is None, name
        assert 0 <= rng.start < rng.stop <= layout.size, name
        for i in range(rng.start, rng.stop):
            hits[i] += 1
    assert hits == [1] * layout.size
    # contiguous and in declaration order: each range starts where the previous one stopped
    ranges = list(fields.values())
    assert ranges[0].start == 0 and ranges[-1].stop == layout.size
    assert all(a.stop == b.start for a, b in itertools.pairwise(ranges))


@pytest.mark.parametrize("count", SLOT_COUNTS)
def test_field_names_are_qualified_by_slot_id(count: int) -> None:
    config = SlotConfig.for_count(count)
    names = list(ObservationLayout(config).fields())
    expected = [n for n, _ in BASE_FIELDS] + [f"{s}.{n}" for s in config.slot_ids for n, _ in SLOT_FIELDS]
    assert names == expected


def test_base_field_positions() -> None:
    layout = ObservationLayout()
    assert {name: (r.start, r.stop) for name, r in ((n, layout.base(n)) for n, _ in BASE_FIELDS)} == {
        "epoch_progress": (0, 1),
        "val_loss": (1, 2),
        "val_accuracy": (2, 3),
        "loss_history": (3, 8),
        "accuracy_history": (8, 13),
        "frac_training": (13, 14),
        "frac_blending": (14, 15),
        "frac_holding": (15, 16),
        "last_action_success": (16, 17),
        "last_op": (17, 23),
    }
    assert layout.base("last_op").stop - layout.base("last_op").start == len(LifecycleOp)


def test_slot_field_widths() -> None:
    widths = dict(SLOT_FIELDS)
    assert widths["is_active"] == 1
    assert widths["stage"] == len(STAGE_ORDER) == 10
    assert sum(widths.values()) == 31
    assert len(widths) == len(SLOT_FIELDS)  # no duplicate names
    assert len(dict(BASE_FIELDS)) == len(BASE_FIELDS)


def test_slot_field_positions() -> None:
    layout = ObservationLayout(SlotConfig.for_count(3))
    offset = {name: 0 for name, _ in SLOT_FIELDS}
    start = 0
    for name, width in SLOT_FIELDS:
        offset[name] = start
        start += width
    assert offset["stage"] == 1 and offset["alpha"] == 11 and offset["seed_age"] == 30
    for k, slot_id in enumerate(("r0c0", "r0c1", "r0c2")):
        block = 23 + 31 * k
        assert layout.slot_block(k) == layout.slot_block(slot_id) == slice(block, block + 31)
        for name, width in SLOT_FIELDS:
            expected = slice(block + offset[name], block + offset[name] + width)
            assert layout.slot(k, name) == layout.slot(slot_id, name) == expected


def test_slot_lookup_with_custom_ids() -> None:
    layout = ObservationLayout(SlotConfig(("r1c1", "r0c0")))
    assert layout.slot_block("r0c0") == slice(54, 85)
    assert layout.slot("r1c1", "alpha") == slice(23 + 11, 23 + 12)
    assert "r1c1.alpha" in layout.fields()


def test_read_by_name() -> None:
    layout = ObservationLayout(SlotConfig.for_count(2))
    features = torch.arange(layout.size, dtype=torch.float32).repeat(4, 7, 1)  # [B=4, T=7, F]
    assert layout.read(features, "val_loss").shape == (4, 7, 1)
    assert layout.read(features, "loss_history")[0, 0].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert layout.read(features, "stage", slot=1)[2, 3].tolist() == [float(i) for i in range(55, 65)]
    assert layout.read(features, "seed_age", slot="r0c0")[..., 0].eq(53.0).all()
    single = torch.arange(layout.size, dtype=torch.float32)
    assert layout.read(single, "last_op").tolist() == [float(i) for i in range(17, 23)]


def test_read_returns_a_view() -> None:
    layout = ObservationLayout(SlotConfig.for_count(1))
    features = torch.zeros(2, layout.size)
    layout.read(features, "alpha", slot=0).fill_(0.25)
    assert features[:, 23 + 11].tolist() == [0.25, 0.25]
    assert features.sum().item() == 0.5


def test_unknown_names_raise_listing_fields() -> None:
    layout = ObservationLayout()
    with pytest.raises(KeyError, match="unknown base field 'alpha'"):
        layout.base("alpha")
    with pytest.raises(KeyError, match=r"unknown slot field 'val_loss'.*'is_active'"):
        layout.slot(0, "val_loss")
    with pytest.raises(ValueError, match="unknown slot id 'r3c3'"):
        layout.slot("r3c3", "alpha")
    with pytest.raises(ValueError, match="unknown slot id 'r3c3'"):
        layout.slot_block("r3c3")


@pytest.mark.parametrize("index", [-1, 3, 9])
def test_slot_index_out_of_range_raises(index: int) -> None:
    """A bad index must not silently alias another slot (negative) or point past the vector."""
    layout = ObservationLayout()
    with pytest.raises(IndexError, match=f"slot index {index} out of range for 3 slots"):
        layout.slot_block(index)
    with pytest.raises(IndexError, match=f"slot index {index} out of range for 3 slots"):
        layout.slot(index, "alpha")


# --- episode block ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", SLOT_COUNTS)
def test_the_episode_block_follows_the_slot_blocks(count: int) -> None:
    """Without the block the layout is the plain V3 one; with it, slot widths (one per slot) and a flag follow."""
    config = SlotConfig.for_count(count)
    plain, varied = ObservationLayout(config), ObservationLayout(config, episode_block=True)
    assert EPISODE_FIELDS == (("slot_width", 1), ("host_nonlinear", 1))
    assert episode_feature_size(count) == count + 1
    assert varied.size == feature_size(count, episode_block=True) == plain.size + count + 1
    end = 23 + 31 * count
    assert varied.episode("slot_width") == slice(end, end + count)
    assert varied.episode("host_nonlinear") == slice(end + count, end + count + 1)
    fields = varied.fields()
    assert {name: rng for name, rng in fields.items() if not name.startswith("episode.")} == plain.fields()
    assert list(fields)[-2:] == ["episode.slot_width", "episode.host_nonlinear"]
    assert list(fields.values())[-1].stop == varied.size
    assert all(a.stop == b.start for a, b in itertools.pairwise(fields.values()))


def test_layout_of_size_picks_the_block_by_size() -> None:
    config = SlotConfig.for_count(3)
    assert ObservationLayout.of_size(config, 116) == ObservationLayout(config)
    assert ObservationLayout.of_size(config, 120) == ObservationLayout(config, episode_block=True)
    with pytest.raises(ValueError, match=r"feature_dim 117 does not match .* 3 slots \(116, or 120 with the episode"):
        ObservationLayout.of_size(config, 117)


def test_episode_fields_of_a_plain_layout_raise() -> None:
    with pytest.raises(KeyError, match="'slot_width': this layout has no episode block"):
        ObservationLayout().episode("slot_width")
    with pytest.raises(KeyError, match="unknown episode field 'alpha'"):
        ObservationLayout(episode_block=True).episode("alpha")


# --- symlog / symexp --------------------------------------------------------------------------


def test_symlog_exact_values() -> None:
    assert symlog(0.0) == 0.0
    assert symlog(1.0) == math.log(2.0)
    assert symlog(-1.0) == -math.log(2.0)
    assert symlog(math.e - 1.0) == pytest.approx(1.0, abs=1e-15)
    assert symlog(-(math.e**3 - 1.0)) == pytest.approx(-3.0, abs=1e-14)
    assert symlog(999.0) == pytest.approx(math.log(1000.0), abs=1e-14)
    assert symlog(1000.0) == math.log(1001.0)
    assert 0.98 < symlog(1000.0) / SYMLOG_SCALE < 1.0  # symlog(1000) ≈ 6.91: large values land just under 1


def test_symexp_exact_values() -> None:
    assert symexp(0.0) == 0.0
    assert symexp(math.log(2.0)) == pytest.approx(1.0, abs=1e-15)
    assert symexp(-1.0) == pytest.approx(-(math.e - 1.0), abs=1e-15)


def test_symlog_is_odd_and_monotone() -> None:
    xs = [-1e6, -10.0, -0.5, 0.0, 0.5, 10.0, 1e6]
    ys = [symlog(x) for x in xs]
    assert ys == sorted(ys)
    assert all(symlog(-x) == -symlog(x) for x in xs)


@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))
def test_symexp_inverts_symlog(x: float) -> None:
    assert symexp(symlog(x)) == pytest.approx(x, rel=1e-9, abs=1e-12)
    assert math.copysign(1.0, symlog(x)) == math.copysign(1.0, x)


@given(st.floats(min_value=-50.0, max_value=50.0, allow_nan=False))
def test_symlog_inverts_symexp(y: float) -> None:
    assert symlog(symexp(y)) == pytest.approx(y, rel=1e-12, abs=1e-12)


# --- Observation ------------------------------------------------------------------------------


def test_observation_holds_features_and_blueprints() -> None:
    features = torch.zeros(2, feature_size(3))
    blueprints = torch.tensor([[-1, 3, -1], [1, -1, 12]])
    obs = Observation(features, blueprints)
    moved = obs.to("cpu")
    assert torch.equal(moved.features, features) and torch.equal(moved.blueprint_indices, blueprints)
    with pytest.raises(AttributeError):
        obs.features = features  # type: ignore[misc]
