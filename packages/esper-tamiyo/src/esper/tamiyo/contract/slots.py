"""Slot configuration: the ordered set of places in the host where seeds can grow."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SLOT_ID = re.compile(r"r([0-9]+)c([0-9]+)")


def parse_slot_id(slot_id: str) -> tuple[int, int]:
    """Return ``(row, col)`` of a canonical ``r{row}c{col}`` id or raise ``ValueError``."""
    match = _SLOT_ID.fullmatch(slot_id) if isinstance(slot_id, str) else None
    if match is None:
        raise ValueError(f"invalid slot id {slot_id!r}: expected the form 'r{{row}}c{{col}}', e.g. 'r0c1'")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True, slots=True)
class SlotConfig:
    """Ordered, unique slot ids. The order is the order of the slot head and of per-slot features."""

    slot_ids: tuple[str, ...] = ("r0c0", "r0c1", "r0c2")
    """Canonical ``r{row}c{col}`` ids; at least one; no duplicates, nor two spellings of one position
    (``r0c1`` and ``r0c01``: the host has one slot there, so the policy would act on a slot that is not in it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot_ids", tuple(self.slot_ids))
        if not self.slot_ids:
            raise ValueError("SlotConfig needs at least one slot id")
        positions = [parse_slot_id(slot_id) for slot_id in self.slot_ids]
        if len(set(self.slot_ids)) != len(self.slot_ids):
            raise ValueError(f"duplicate slot ids in {list(self.slot_ids)}")
        first_at: dict[tuple[int, int], str] = {}
        for slot_id, (row, col) in zip(self.slot_ids, positions, strict=True):
            other = first_at.setdefault((row, col), slot_id)
            if other != slot_id:
                raise ValueError(
                    f"slot ids {other!r} and {slot_id!r} both name row {row}, column {col}: give each slot once "
                    f"(as 'r{row}c{col}')"
                )

    @classmethod
    def for_count(cls, num_slots: int) -> SlotConfig:
        """Default config of ``num_slots`` slots in one row: ``r0c0 .. r0c{n-1}``."""
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        return cls(tuple(f"r0c{i}" for i in range(num_slots)))

    @property
    def num_slots(self) -> int:
        return len(self.slot_ids)

    def index_of(self, slot_id: str) -> int:
        """Position of ``slot_id`` in the slot order; ``ValueError`` listing the known ids otherwise."""
        try:
            return self.slot_ids.index(slot_id)
        except ValueError:
            raise ValueError(f"unknown slot id {slot_id!r}; this config has {list(self.slot_ids)}") from None
