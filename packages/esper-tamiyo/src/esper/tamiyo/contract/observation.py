"""The observation layout ("Obs V3"): 23 base features + 31 per slot, described by named fields.

An environment whose episodes differ in ways the policy must see (the ``digits-varied``
benchmark draws each episode's host) appends an *episode block* after the slot blocks:
:data:`EPISODE_FIELDS`, constant over an episode. Layouts without it are exactly the plain
V3 layout, so a task that does not vary keeps its feature size and its checkpoints.

Everything that reads observations (the heuristic policy, tests, telemetry) goes through the
named fields, never through magic indices. Blueprint identity is not in the feature vector; it
travels separately as ``blueprint_indices[num_slots]`` (-1 = empty) for a learned embedding.
The layout is esper-lite's, so observations mean the same in both systems.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from esper.tamiyo.contract.slots import SlotConfig

#: Value of a feature that has not been measured yet (outside every feature's measured range).
UNKNOWN = -1.0
#: symlog values are divided by this so typical magnitudes land in [-1, 1] (symlog(1000) ≈ 6.9).
SYMLOG_SCALE = 7.0
#: Number of past validation losses / accuracies in the base block.
HISTORY_LENGTH = 5

#: Base block: ``(name, width)`` in order. Accuracies are fractions (percent / 100).
BASE_FIELDS: tuple[tuple[str, int], ...] = (
    ("epoch_progress", 1),  # epoch / max_epochs in [0, 1]
    ("val_loss", 1),  # symlog(loss) / 7
    ("val_accuracy", 1),  # accuracy / 100
    ("loss_history", HISTORY_LENGTH),  # symlog/7 of the last 5 losses, oldest first, UNKNOWN-padded on the left
    ("accuracy_history", HISTORY_LENGTH),  # last 5 accuracies / 100, oldest first, UNKNOWN-padded
    ("frac_training", 1),  # slots in TRAINING / num_slots
    ("frac_blending", 1),  # slots in BLENDING / num_slots
    ("frac_holding", 1),  # slots in HOLDING or FOSSILIZED / num_slots
    ("last_action_success", 1),  # 1 if the previous action executed as chosen
    ("last_op", 6),  # one-hot of the previous op
)

#: Per-slot block: ``(name, width)`` in order. An empty slot's block is all zeros.
SLOT_FIELDS: tuple[tuple[str, int], ...] = (
    ("is_active", 1),  # 1 when the slot holds a seed
    ("stage", 10),  # one-hot over STAGE_ORDER
    ("alpha", 1),  # current blend alpha in [0, 1]
    ("contribution", 1),  # counterfactual contribution (accuracy points) / 10, clamped to [-1, 1]
    ("contribution_velocity", 1),  # change of contribution per epoch / 10, clamped
    ("blend_tempo", 1),  # blend ramp length in epochs / 12
    ("alpha_target", 1),  # target amplitude of the alpha controller
    ("alpha_mode", 1),  # AlphaMode / 2
    ("alpha_steps_total", 1),  # ramp length / max_epochs
    ("alpha_steps_done", 1),  # ticks done / max_epochs
    ("time_to_target", 1),  # ticks left / max_epochs
    ("alpha_velocity", 1),  # alpha change last tick, clamped to [-1, 1]
    ("alpha_algorithm", 1),  # (AlphaAlgorithm - 1) / 2
    ("interaction_sum", 1),  # sum of pairwise interaction terms / 10, clamped
    ("grad_norm", 1),  # symlog(seed gradient norm) / 7, 0 without telemetry
    ("grad_health", 1),  # in [-1, 1]; 0 without telemetry
    ("has_vanishing", 1),  # 0/1
    ("has_exploding", 1),  # 0/1
    ("grad_health_prev", 1),  # previous epoch's grad_health, UNKNOWN when never measured
    ("epochs_in_stage", 1),  # / max_epochs
    ("contribution_freshness", 1),  # 0.995 ** epochs since last counterfactual, UNKNOWN when never measured
    ("seed_age", 1),  # epochs since germination / max_epochs
)

#: Episode block (layouts with ``episode_block=True`` only): what the episode was drawn with.
#: ``slot_width`` has one entry per slot (slot-head order); the others are scalars.
EPISODE_FIELDS: tuple[tuple[str, int], ...] = (
    ("slot_width", 1),  # per slot: log2(features or channels the slot sees) / 8, e.g. 2 -> 0.125, 128 -> 0.875
    ("host_nonlinear", 1),  # 1 if the host's blocks have activations, 0 if they are linear
)
#: Entries of :data:`EPISODE_FIELDS` that repeat once per slot.
PER_SLOT_EPISODE_FIELDS: frozenset[str] = frozenset({"slot_width"})

BASE_FEATURE_SIZE = sum(width for _, width in BASE_FIELDS)
SLOT_FEATURE_SIZE = sum(width for _, width in SLOT_FIELDS)


def feature_size(num_slots: int, *, episode_block: bool = False) -> int:
    """Length of the observation vector for ``num_slots`` slots: ``23 + 31 * num_slots``, plus
    ``episode_feature_size(num_slots)`` with the episode block."""
    if num_slots < 1:
        raise ValueError(f"num_slots must be >= 1, got {num_slots}")
    extra = episode_feature_size(num_slots) if episode_block else 0
    return BASE_FEATURE_SIZE + SLOT_FEATURE_SIZE * num_slots + extra


def episode_feature_size(num_slots: int) -> int:
    """Length of the episode block for ``num_slots`` slots (per-slot fields repeat once per slot)."""
    return sum(width * (num_slots if name in PER_SLOT_EPISODE_FIELDS else 1) for name, width in EPISODE_FIELDS)


def symlog(x: float) -> float:
    """``sign(x) * log1p(|x|)``: compresses large magnitudes while keeping sign and small values."""
    return math.copysign(math.log1p(abs(x)), x)


def symexp(y: float) -> float:
    """Inverse of :func:`symlog`."""
    return math.copysign(math.expm1(abs(y)), y)


def _offsets(fields: tuple[tuple[str, int], ...], start: int) -> dict[str, slice]:
    out: dict[str, slice] = {}
    for name, width in fields:
        out[name] = slice(start, start + width)
        start += width
    return out


@dataclass(frozen=True)
class ObservationLayout:
    """Named index ranges of the observation vector for one slot configuration."""

    slot_config: SlotConfig = SlotConfig()
    episode_block: bool = False
    """Append the episode block (:data:`EPISODE_FIELDS`) after the slot blocks."""

    @classmethod
    def of_size(cls, slot_config: SlotConfig, feature_dim: int) -> ObservationLayout:
        """The layout of ``slot_config`` whose size is ``feature_dim`` (with or without the episode block).

        Lets a consumer that is told only the feature size (a policy built by the registry) read by name.
        Raises ``ValueError`` when neither layout has that size.
        """
        for episode_block in (False, True):
            layout = cls(slot_config, episode_block)
            if layout.size == feature_dim:
                return layout
        plain, with_block = cls(slot_config).size, cls(slot_config, True).size
        raise ValueError(
            f"feature_dim {feature_dim} does not match the observation layout of {slot_config.num_slots} slots "
            f"({plain}, or {with_block} with the episode block)"
        )

    @property
    def num_slots(self) -> int:
        return self.slot_config.num_slots

    @property
    def size(self) -> int:
        """Total feature count (``feature_size(num_slots, episode_block=...)``)."""
        return feature_size(self.num_slots, episode_block=self.episode_block)

    @cached_property
    def _base(self) -> dict[str, slice]:
        return _offsets(BASE_FIELDS, 0)

    @cached_property
    def _episode(self) -> dict[str, slice]:
        """Episode fields → index range (empty without the episode block)."""
        if not self.episode_block:
            return {}
        widths = [
            (name, width * (self.num_slots if name in PER_SLOT_EPISODE_FIELDS else 1)) for name, width in EPISODE_FIELDS
        ]
        return _offsets(tuple(widths), BASE_FEATURE_SIZE + self.num_slots * SLOT_FEATURE_SIZE)

    @cached_property
    def _slots(self) -> tuple[dict[str, slice], ...]:
        return tuple(_offsets(SLOT_FIELDS, BASE_FEATURE_SIZE + k * SLOT_FEATURE_SIZE) for k in range(self.num_slots))

    def _slot_index(self, slot: int | str) -> int:
        """Position of slot id or index ``slot``; ``IndexError`` for an index outside ``[0, num_slots)``."""
        if isinstance(slot, str):
            return self.slot_config.index_of(slot)
        if not 0 <= slot < self.num_slots:
            raise IndexError(f"slot index {slot} out of range for {self.num_slots} slots")
        return slot

    def base(self, name: str) -> slice:
        """Index range of base field ``name``."""
        try:
            return self._base[name]
        except KeyError:
            raise KeyError(f"unknown base field {name!r}; fields: {[n for n, _ in BASE_FIELDS]}") from None

    def slot(self, slot: int | str, name: str) -> slice:
        """Index range of per-slot field ``name`` for slot index or id ``slot``."""
        index = self._slot_index(slot)
        try:
            return self._slots[index][name]
        except KeyError:
            raise KeyError(f"unknown slot field {name!r}; fields: {[n for n, _ in SLOT_FIELDS]}") from None

    def episode(self, name: str) -> slice:
        """Index range of episode field ``name`` (per-slot fields span every slot, slot-head order)."""
        try:
            return self._episode[name]
        except KeyError:
            if not self.episode_block:
                raise KeyError(f"episode field {name!r}: this layout has no episode block") from None
            raise KeyError(f"unknown episode field {name!r}; fields: {[n for n, _ in EPISODE_FIELDS]}") from None

    def slot_block(self, slot: int | str) -> slice:
        """Index range of the whole 31-feature block of one slot."""
        index = self._slot_index(slot)
        start = BASE_FEATURE_SIZE + index * SLOT_FEATURE_SIZE
        return slice(start, start + SLOT_FEATURE_SIZE)

    def fields(self) -> dict[str, slice]:
        """Every field with a qualified name (``"val_loss"``, ``"r0c1.alpha"``, ``"episode.slot_width"``) → range."""
        out = dict(self._base)
        for slot_id, block in zip(self.slot_config.slot_ids, self._slots, strict=True):
            out.update({f"{slot_id}.{name}": rng for name, rng in block.items()})
        out.update({f"episode.{name}": rng for name, rng in self._episode.items()})
        return out

    def read(self, features: torch.Tensor, name: str, slot: int | str | None = None) -> torch.Tensor:
        """View of field ``name`` (of ``slot`` when given) in ``features[..., size]`` → ``[..., width]``."""
        rng = self.base(name) if slot is None else self.slot(slot, name)
        return features[..., rng]


@dataclass(frozen=True, slots=True)
class Observation:
    """What a policy sees: the feature vector and the blueprint of each slot.

    ``features`` is float32 ``[B, F]`` (or ``[B, T, F]`` for sequences) laid out by
    :class:`ObservationLayout`; ``blueprint_indices`` is int64 ``[B, S]`` (or ``[B, T, S]``) of
    ``BlueprintAction`` values with -1 for an empty slot.
    """

    features: torch.Tensor
    blueprint_indices: torch.Tensor

    def to(self, device: torch.device | str) -> Observation:
        return Observation(self.features.to(device), self.blueprint_indices.to(device))
