"""Reflection helpers behind config files and generated CLI options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pytest

from esper.simic.training.dataclass_io import ConfigKeyError, coerce, field_docs, from_plain, to_plain


@dataclass(frozen=True, slots=True)
class Inner:
    """A nested section."""

    width: int = 3
    """Width in units.

    Second paragraph is not part of the help."""
    names: tuple[str, ...] = ("a",)
    """Some names."""


@dataclass(frozen=True, slots=True)
class Outer:
    mode: Literal["x", "y"] = "x"
    """Which mode."""
    rate: float = 0.5
    limit: int | None = None
    """Optional limit."""
    table: Mapping[str, float] = field(default_factory=dict)
    """A mapping."""
    inner: Inner = field(default_factory=Inner)
    """The inner section."""


def test_field_docs_reads_first_paragraph_and_blank_for_undocumented() -> None:
    assert field_docs(Inner) == {"width": "Width in units.", "names": "Some names."}
    assert field_docs(Outer)["rate"] == ""
    assert field_docs(Outer)["mode"] == "Which mode."


def test_round_trip_through_plain_data() -> None:
    value = Outer(mode="y", rate=2.0, limit=4, table={"op": 0.1}, inner=Inner(width=7, names=("p", "q")))
    plain = to_plain(value)
    assert plain == {
        "mode": "y",
        "rate": 2.0,
        "limit": 4,
        "table": {"op": 0.1},
        "inner": {"width": 7, "names": ["p", "q"]},
    }
    assert from_plain(Outer, plain) == value


def test_unknown_keys_are_named_with_their_section() -> None:
    with pytest.raises(ConfigKeyError, match=r"inner\.depth"):
        from_plain(Outer, {"inner": {"depth": 1}})
    with pytest.raises(ConfigKeyError, match="'colour'"):
        from_plain(Outer, {"colour": "red"})


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [(3, float, 3.0), (None, int | None, None), ([1, 2], tuple[int, ...], (1, 2)), ("y", Literal["x", "y"], "y")],
)
def test_coerce_accepts(value: object, tp: object, expected: object) -> None:
    assert coerce(value, tp, key="k") == expected


@pytest.mark.parametrize(
    ("value", "tp"), [("3", int), (True, int), (1.5, int), (1, bool), ("z", Literal["x", "y"]), ("a", tuple[str, ...])]
)
def test_coerce_rejects_with_the_key(value: object, tp: object) -> None:
    with pytest.raises(ConfigKeyError, match="'k'"):
        coerce(value, tp, key="k")
