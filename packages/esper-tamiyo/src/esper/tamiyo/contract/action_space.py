"""The action space as a value: ordered categorical heads, the op head, causal relevance, placeholders.

Networks, rollout buffers and the PPO loss are written against an ``ActionSpace`` instead of
hard-coded head names, so a plugin policy or a test can use a smaller space. The morphogenetic
space (8 heads) is built by :func:`morphogenetic_action_space`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from esper.tamiyo.contract.actions import (
    AlphaCurveAction,
    AlphaSpeedAction,
    AlphaTargetAction,
    BlueprintAction,
    GerminationStyle,
    LifecycleOp,
    TempoAction,
)
from esper.tamiyo.contract.slots import SlotConfig

#: Head order of the morphogenetic space; every per-head dict follows it.
HEAD_NAMES: tuple[str, ...] = (
    "slot",
    "blueprint",
    "style",
    "tempo",
    "alpha_target",
    "alpha_speed",
    "alpha_curve",
    "op",
)

#: Heads that each op causally depends on, besides the op head itself; every other head is
#: canonicalised to a placeholder for that op.
OP_RELEVANT_HEADS: Mapping[LifecycleOp, frozenset[str]] = MappingProxyType(
    {
        LifecycleOp.WAIT: frozenset(),
        LifecycleOp.GERMINATE: frozenset({"slot", "blueprint", "style", "tempo", "alpha_target"}),
        LifecycleOp.SET_ALPHA_TARGET: frozenset({"slot", "style", "alpha_target", "alpha_speed", "alpha_curve"}),
        LifecycleOp.PRUNE: frozenset({"slot", "alpha_speed", "alpha_curve"}),
        LifecycleOp.FOSSILIZE: frozenset({"slot"}),
        LifecycleOp.ADVANCE: frozenset({"slot"}),
    }
)


@dataclass(frozen=True, slots=True)
class ActionSpace:
    """Ordered categorical heads with one op head that decides which others matter.

    An irrelevant head is forced to its canonical placeholder: the preferred index in
    ``placeholders`` when the head's mask allows it, otherwise the first valid index. It then has
    exactly one valid action, so its log-prob and normalised entropy are exactly 0 on both the
    rollout and the update path.
    """

    head_names: tuple[str, ...]
    """Head names in canonical order."""
    head_sizes: tuple[int, ...]
    """Number of actions of each head, aligned with ``head_names``."""
    op_head: str
    """Name of the head whose value selects the relevance row."""
    relevance: tuple[tuple[bool, ...], ...]
    """``relevance[op][head_index]``: did that head matter for that op. The op head is always relevant."""
    placeholders: tuple[int, ...]
    """Preferred canonical index of each head when irrelevant."""
    slot_head: str | None = None
    """Name of the head whose mask depends on the chosen op (``ActionMasks.slot_by_op`` holds one row
    per op; the rollout leg takes the chosen op's row), or None when no head is op-conditioned.
    The morphogenetic space names its ``"slot"`` head; code that needs the slot head reads it here."""

    def __post_init__(self) -> None:
        n = len(self.head_names)
        if n == 0 or len(set(self.head_names)) != n:
            raise ValueError(f"head names must be non-empty and unique, got {self.head_names}")
        if len(self.head_sizes) != n or any(s < 1 for s in self.head_sizes):
            raise ValueError(f"head_sizes must give a size >= 1 for each of {n} heads, got {self.head_sizes}")
        if self.op_head not in self.head_names:
            raise ValueError(f"op head {self.op_head!r} is not one of {self.head_names}")
        if len(self.relevance) != self.num_ops or any(len(row) != n for row in self.relevance):
            raise ValueError(f"relevance must be [{self.num_ops} ops][{n} heads]")
        if any(not row[self.op_index] for row in self.relevance):
            raise ValueError("the op head must be relevant to every op")
        if len(self.placeholders) != n or any(
            not 0 <= p < s for p, s in zip(self.placeholders, self.head_sizes, strict=True)
        ):
            raise ValueError(f"placeholders must be valid indices of each head, got {self.placeholders}")
        if self.slot_head is not None and self.slot_head not in self.head_names:
            raise ValueError(f"slot head {self.slot_head!r} is not one of {self.head_names}")
        if self.slot_head == self.op_head:
            raise ValueError(f"the op head {self.op_head!r} cannot also be the slot head (the op conditions it)")

    @property
    def num_heads(self) -> int:
        return len(self.head_names)

    @property
    def op_index(self) -> int:
        """Position of the op head in ``head_names``."""
        return self.head_names.index(self.op_head)

    @property
    def num_ops(self) -> int:
        return self.head_sizes[self.op_index]

    def size(self, head: str) -> int:
        """Number of actions of ``head``."""
        return self.head_sizes[self.head_names.index(head)]

    def sizes(self) -> dict[str, int]:
        """``{head: size}`` in head order."""
        return dict(zip(self.head_names, self.head_sizes, strict=True))

    def is_relevant(self, op: int, head: str) -> bool:
        """Whether ``head`` mattered for ``op``."""
        return self.relevance[op][self.head_names.index(head)]

    def relevance_table(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Bool tensor ``[num_ops, num_heads]`` of the relevance rows (for vectorised lookups)."""
        return torch.tensor(self.relevance, dtype=torch.bool, device=device)

    def relevance_masks(self, ops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-head bool masks shaped like ``ops`` (any shape of op indices): True where the head mattered."""
        table = self.relevance_table(ops.device)[ops.long()]
        return {name: table[..., i] for i, name in enumerate(self.head_names)}

    def canonical_action(self, head: str, mask: torch.Tensor) -> torch.Tensor:
        """Canonical placeholder index for ``head`` under ``mask`` ``[..., size]`` → int64 ``[...]``.

        The preferred placeholder if the mask allows it, else the first valid index. Vectorised,
        no host sync.
        """
        preferred = self.placeholders[self.head_names.index(head)]
        first_valid = mask.to(torch.int8).argmax(dim=-1)
        return torch.where(mask[..., preferred], torch.full_like(first_valid, preferred), first_valid)


def morphogenetic_action_space(slot_config: SlotConfig | None = None) -> ActionSpace:
    """The 8-head Esper action space for ``slot_config`` (default 3 slots)."""
    slots = slot_config or SlotConfig()
    sizes = {
        "slot": slots.num_slots,
        "blueprint": len(BlueprintAction),
        "style": len(GerminationStyle),
        "tempo": len(TempoAction),
        "alpha_target": len(AlphaTargetAction),
        "alpha_speed": len(AlphaSpeedAction),
        "alpha_curve": len(AlphaCurveAction),
        "op": len(LifecycleOp),
    }
    placeholders = {
        "slot": 0,
        "blueprint": int(BlueprintAction.NOOP),
        "style": int(GerminationStyle.SIGMOID_ADD),
        "tempo": int(TempoAction.STANDARD),
        "alpha_target": int(AlphaTargetAction.FULL),
        "alpha_speed": int(AlphaSpeedAction.INSTANT),
        "alpha_curve": int(AlphaCurveAction.LINEAR),
        "op": int(LifecycleOp.WAIT),
    }
    relevance = tuple(tuple(name == "op" or name in OP_RELEVANT_HEADS[op] for name in HEAD_NAMES) for op in LifecycleOp)
    return ActionSpace(
        head_names=HEAD_NAMES,
        head_sizes=tuple(sizes[h] for h in HEAD_NAMES),
        op_head="op",
        relevance=relevance,
        placeholders=tuple(placeholders[h] for h in HEAD_NAMES),
        slot_head="slot",
    )
