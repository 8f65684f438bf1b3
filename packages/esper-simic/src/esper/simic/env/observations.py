"""Observation features and action masks of one environment, built through the contract.

Every feature is written by name through :class:`ObservationLayout` (no magic indices); the
encodings follow the field comments in ``esper.tamiyo.contract.observation`` ("Obs V3",
esper-lite's layout). The vector is filled as a Python list and turned into one float32
tensor, so building it costs a few microseconds per field and no tensor op per feature.

Choices where the contract leaves room: a slot in a failure stage (PRUNED/EMBARGOED/RESETTING)
shows its stage one-hot and counters with ``is_active = 0`` (no module); only a DORMANT slot is
all zeros. ``interaction_sum`` is 0 (pairwise interactions are not measured). Non-finite
measurements are written as ``UNKNOWN`` so an observation is always finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from esper.simic.env.signals import TrackerSignals
from esper.simic.env.slot import SeedSlot
from esper.tamiyo.contract import (
    HISTORY_LENGTH,
    STAGE_ORDER,
    SYMLOG_SCALE,
    UNKNOWN,
    ActionMasks,
    LifecycleOp,
    Observation,
    ObservationLayout,
    SeedStage,
    SlotConfig,
    compute_action_masks,
    symlog,
)

#: Blend tempo normaliser (epochs), reference 12.
TEMPO_SCALE = 12.0
#: Contribution and its velocity are divided by this (accuracy points) and clamped to [-1, 1].
CONTRIBUTION_SCALE = 10.0
#: Freshness decay per epoch since the last counterfactual (reference 0.995).
FRESHNESS_DECAY = 0.995
_STAGE_INDEX = {stage: i for i, stage in enumerate(STAGE_ORDER)}


def _finite(value: float | None, default: float = UNKNOWN) -> float:
    return default if value is None or not math.isfinite(value) else value


def _clamp(value: float, low: float = -1.0, high: float = 1.0) -> float:
    return min(max(value, low), high)


def _scaled_loss(loss: float | None) -> float:
    return UNKNOWN if loss is None or not math.isfinite(loss) else symlog(loss) / SYMLOG_SCALE


def _padded(values: Sequence[float]) -> list[float]:
    recent = list(values)[-HISTORY_LENGTH:]
    return [UNKNOWN] * (HISTORY_LENGTH - len(recent)) + recent


def _write(out: list[float], where: slice, values: Sequence[float]) -> None:
    out[where] = list(values)


def _slot_features(out: list[float], layout: ObservationLayout, index: int, slot: SeedSlot, max_epochs: float) -> None:
    """Fill the block of ``slot`` (left at zeros for a DORMANT slot)."""
    if slot.stage == SeedStage.DORMANT:
        return
    ctrl = slot.controller
    one_hot = [0.0] * len(STAGE_ORDER)
    one_hot[_STAGE_INDEX[slot.stage]] = 1.0
    grads = slot.gradients
    contribution = slot.contribution
    since = slot.epochs_since_contribution
    values: dict[str, Sequence[float] | float] = {
        "is_active": 1.0 if slot.occupied else 0.0,
        "stage": one_hot,
        "alpha": ctrl.alpha,
        "contribution": 0.0 if contribution is None else _clamp(contribution / CONTRIBUTION_SCALE),
        "contribution_velocity": _clamp(slot.contribution_velocity / CONTRIBUTION_SCALE),
        "blend_tempo": slot.tempo_epochs / TEMPO_SCALE,
        "alpha_target": ctrl.target,
        "alpha_mode": int(ctrl.mode) / 2.0,
        "alpha_steps_total": _clamp(ctrl.steps_total / max_epochs, 0.0),
        "alpha_steps_done": _clamp(ctrl.steps_done / max_epochs, 0.0),
        "time_to_target": _clamp(ctrl.steps_remaining / max_epochs, 0.0),
        "alpha_velocity": _clamp(ctrl.last_delta),
        "alpha_algorithm": (int(slot.algorithm) - 1) / 2.0,
        "interaction_sum": 0.0,
        "grad_norm": 0.0 if grads is None or not math.isfinite(grads.norm) else symlog(grads.norm) / SYMLOG_SCALE,
        "grad_health": 0.0 if grads is None else grads.health,
        "has_vanishing": 0.0 if grads is None else float(grads.vanishing_fraction > 0.0),
        "has_exploding": 0.0 if grads is None else float(grads.exploding_fraction > 0.0 or not grads.finite),
        "grad_health_prev": _finite(slot.grad_health_prev),
        "epochs_in_stage": _clamp(slot.epochs_in_stage / max_epochs, 0.0),
        "contribution_freshness": UNKNOWN if since is None else FRESHNESS_DECAY**since,
        "seed_age": _clamp(slot.age_epochs / max_epochs, 0.0),
    }
    for name, value in values.items():
        _write(out, layout.slot(index, name), value if isinstance(value, list) else [float(value)])  # type: ignore[list-item]


def build_observation(
    layout: ObservationLayout,
    slots: Sequence[SeedSlot],
    signals: TrackerSignals,
    *,
    epoch: int,
    episode_length: int,
    last_action_success: bool,
    last_op: int,
    episode: Mapping[str, Sequence[float]] | None = None,
) -> Observation:
    """Observation of one environment: features float32 ``[F]`` and blueprint indices int64 ``[S]``.

    ``slots`` must be in the layout's slot order; ``epoch`` is the number of host epochs trained
    so far in the episode. ``episode`` fills the layout's episode block by field name (required
    exactly when the layout has one).
    """
    if (episode is None) == layout.episode_block:
        raise ValueError("the episode block's values must be given exactly when the layout has an episode block")
    if len(slots) != layout.num_slots:
        raise ValueError(f"got {len(slots)} slots for a layout of {layout.num_slots}")
    out = [0.0] * layout.size
    max_epochs = float(episode_length)
    last_op_one_hot = [0.0] * len(LifecycleOp)
    last_op_one_hot[int(last_op)] = 1.0
    stages = [s.stage for s in slots]
    base: dict[str, Sequence[float]] = {
        "epoch_progress": [_clamp(epoch / max_epochs, 0.0)],
        "val_loss": [_scaled_loss(signals.val_loss)],
        "val_accuracy": [UNKNOWN if signals.val_accuracy is None else _finite(signals.val_accuracy / 100.0)],
        "loss_history": _padded([_scaled_loss(v) for v in signals.loss_history]),
        "accuracy_history": _padded([_finite(v / 100.0) for v in signals.accuracy_history]),
        "frac_training": [stages.count(SeedStage.TRAINING) / len(slots)],
        "frac_blending": [stages.count(SeedStage.BLENDING) / len(slots)],
        "frac_holding": [(stages.count(SeedStage.HOLDING) + stages.count(SeedStage.FOSSILIZED)) / len(slots)],
        "last_action_success": [1.0 if last_action_success else 0.0],
        "last_op": last_op_one_hot,
    }
    for name, values in base.items():
        _write(out, layout.base(name), values)
    for index, slot in enumerate(slots):
        _slot_features(out, layout, index, slot, max_epochs)
    for name, values in (episode or {}).items():
        _write(out, layout.episode(name), values)
    blueprints = [int(s.blueprint) if s.occupied and s.blueprint is not None else -1 for s in slots]
    return Observation(torch.tensor(out, dtype=torch.float32), torch.tensor(blueprints, dtype=torch.int64))


def build_masks(
    slots: Sequence[SeedSlot],
    *,
    slot_config: SlotConfig,
    topology: str,
    max_seeds: int,
    min_prune_age: int,
    auto_advance: bool,
) -> ActionMasks:
    """The contract's masks for these slots; the seed count is live + fossilized (pruned seeds free their budget)."""
    states = {s.slot_id: s.mask_state() for s in slots}
    total = sum(1 for s in slots if s.is_live or s.stage == SeedStage.FOSSILIZED)
    return compute_action_masks(
        states,
        slot_config=slot_config,
        topology=topology,
        total_seeds=total,
        max_seeds=max_seeds,
        min_prune_age=min_prune_age,
        auto_advance=auto_advance,
    )
