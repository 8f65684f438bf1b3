"""SlotConfig: ordered unique canonical ids, any count >= 1."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esper.tamiyo.contract import SlotConfig, parse_slot_id


def test_default_is_three_slots_in_one_row() -> None:
    config = SlotConfig()
    assert config.slot_ids == ("r0c0", "r0c1", "r0c2")
    assert config.num_slots == 3


@pytest.mark.parametrize("count", [1, 2, 3, 5, 9])
def test_for_count(count: int) -> None:
    config = SlotConfig.for_count(count)
    assert config.num_slots == count
    assert config.slot_ids == tuple(f"r0c{i}" for i in range(count))
    assert [config.index_of(s) for s in config.slot_ids] == list(range(count))


@pytest.mark.parametrize("count", [0, -1])
def test_for_count_rejects_non_positive(count: int) -> None:
    with pytest.raises(ValueError, match=f"num_slots must be >= 1, got {count}"):
        SlotConfig.for_count(count)


def test_order_is_preserved_and_list_is_converted_to_tuple() -> None:
    config = SlotConfig(["r1c0", "r0c2", "r0c0"])  # type: ignore[arg-type]
    assert config.slot_ids == ("r1c0", "r0c2", "r0c0")
    assert config.index_of("r0c2") == 1
    assert config.index_of("r0c0") == 2


def test_index_of_unknown_id_lists_known_ids() -> None:
    with pytest.raises(ValueError, match=r"unknown slot id 'r9c9'.*\['r0c0', 'r0c1', 'r0c2'\]"):
        SlotConfig().index_of("r9c9")


def test_empty_config_rejected() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        SlotConfig(())


def test_duplicates_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate slot ids"):
        SlotConfig(("r0c0", "r0c1", "r0c0"))


def test_two_spellings_of_one_position_are_refused_naming_both() -> None:
    """``r0c1`` and ``r0c01`` are both (0, 1): the model would build one slot there and the policy act on two."""
    with pytest.raises(ValueError) as info:
        SlotConfig(("r0c0", "r0c1", "r0c01"))
    message = str(info.value)
    assert "\n" not in message and "'r0c1' and 'r0c01'" in message and "row 0, column 1" in message
    assert SlotConfig(("r0c01",)).slot_ids == ("r0c01",)  # one spelling alone is still one slot


@given(
    row=st.integers(0, 20),
    col=st.integers(0, 20),
    zeros=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=2, unique=True),
)
def test_any_two_spellings_of_a_position_are_refused(row: int, col: int, zeros: list[tuple[int, int]]) -> None:
    ids = tuple(f"r{'0' * zr}{row}c{'0' * zc}{col}" for zr, zc in zeros)
    assert parse_slot_id(ids[0]) == parse_slot_id(ids[1]) == (row, col)
    with pytest.raises(ValueError, match=f"slot ids '{ids[0]}' and '{ids[1]}' both name row {row}, column {col}"):
        SlotConfig(ids)


@pytest.mark.parametrize("bad", ["slot0", "r0", "R0C0", "r0c0 ", "r0c0\n", "r-1c0", "rac1", "r\u0661c0", ""])
def test_non_canonical_ids_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid slot id"):
        SlotConfig(("r0c0", bad))


def test_parse_slot_id() -> None:
    assert parse_slot_id("r0c0") == (0, 0)
    assert parse_slot_id("r12c3") == (12, 3)
    with pytest.raises(ValueError, match=r"invalid slot id 'x'"):
        parse_slot_id("x")
    with pytest.raises(ValueError, match="invalid slot id 3"):
        parse_slot_id(3)  # type: ignore[arg-type]


def test_is_frozen_and_hashable() -> None:
    config = SlotConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.slot_ids = ("r0c0",)  # type: ignore[misc]
    assert hash(config) == hash(SlotConfig(("r0c0", "r0c1", "r0c2")))
    assert config == SlotConfig.for_count(3)
