"""Observation features written by name from slot state and tracker signals; masks from the contract."""

from __future__ import annotations

import math

import pytest
import torch

from esper.simic.env.alpha import curve_progress
from esper.simic.env.observations import build_masks, build_observation
from esper.simic.env.signals import SignalTracker
from esper.simic.env.slot import STYLE_STEEPNESS, GradientStats, SeedSlot, SlotSettings
from esper.tamiyo.contract import (
    STYLE_BLENDS,
    UNKNOWN,
    AlphaCurve,
    BlueprintAction,
    GerminationStyle,
    LifecycleOp,
    ObservationLayout,
    SlotConfig,
    symlog,
)

CONFIG = SlotConfig(("r0c0", "r0c1", "r0c2"))
LAYOUT = ObservationLayout(CONFIG)


def _slots() -> list[SeedSlot]:
    return [SeedSlot(slot_id, (8,), "mlp", SlotSettings(training_dwell=0)) for slot_id in CONFIG.slot_ids]


def _read(features: torch.Tensor, name: str, slot: str | None = None) -> list[float]:
    return [round(v, 6) for v in LAYOUT.read(features, name, slot).tolist()]


def test_base_block_from_signals() -> None:
    tracker = SignalTracker()
    tracker.update(2.0, 30.0)
    signals = tracker.update(1.0, 55.0)
    obs = build_observation(
        LAYOUT, _slots(), signals, epoch=10, episode_length=40, last_action_success=False, last_op=LifecycleOp.PRUNE
    )
    f = obs.features
    assert f.shape == (LAYOUT.size,) and obs.blueprint_indices.tolist() == [-1, -1, -1]
    assert _read(f, "epoch_progress") == [0.25]
    assert _read(f, "val_loss") == [round(symlog(1.0) / 7, 6)]
    assert _read(f, "val_accuracy") == [0.55]
    assert _read(f, "accuracy_history") == [UNKNOWN, UNKNOWN, UNKNOWN, 0.3, 0.55]
    assert _read(f, "loss_history")[:3] == [UNKNOWN] * 3
    assert _read(f, "last_action_success") == [0.0]
    assert _read(f, "last_op") == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert torch.count_nonzero(f[LAYOUT.slot_block(0).start :]) == 0  # empty slots are all zeros


def test_slot_block_of_a_blending_seed() -> None:
    slots = _slots()
    slot = slots[1]
    slot.germinate(BlueprintAction.MLP_SMALL, GerminationStyle.GATED_GATE, 5, 1.0, torch.Generator(), 40.0)
    slot.tick(True)
    slot.record_gradients(GradientStats(3.0, True, 0.25, 0.0))
    slot.tick(True)  # → BLENDING, first of 5 linear ticks
    slot.record_contribution(4.0)
    signals = SignalTracker().update(1.0, 50.0)
    f = build_observation(
        LAYOUT, slots, signals, epoch=2, episode_length=40, last_action_success=True, last_op=0
    ).features
    s = "r0c1"
    assert _read(f, "is_active", s) == [1.0]
    assert _read(f, "stage", s) == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]  # BLENDING = index 4
    curve, _ = STYLE_BLENDS[GerminationStyle.GATED_GATE]  # the contract's blend curve for this style
    alpha = round(curve_progress(1 / 5, curve, STYLE_STEEPNESS), 6)
    assert _read(f, "alpha", s) == [alpha] and _read(f, "alpha_target", s) == [1.0]
    assert _read(f, "alpha_mode", s) == [0.5]  # UP / 2
    assert _read(f, "alpha_steps_total", s) == [round(5 / 40, 6)] and _read(f, "time_to_target", s) == [0.1]
    assert _read(f, "alpha_velocity", s) == [alpha]
    assert _read(f, "alpha_algorithm", s) == [1.0]  # GATE → (3 − 1) / 2
    assert _read(f, "blend_tempo", s) == [round(5 / 12, 6)]
    assert _read(f, "contribution", s) == [0.4] and _read(f, "contribution_freshness", s) == [1.0]
    assert _read(f, "grad_norm", s) == [round(symlog(3.0) / 7, 6)]
    assert _read(f, "grad_health", s) == [0.875] and _read(f, "has_vanishing", s) == [1.0]
    assert _read(f, "grad_health_prev", s) == [UNKNOWN]
    assert _read(f, "seed_age", s) == [0.05] and _read(f, "epochs_in_stage", s) == [0.025]
    assert _read(f, "frac_blending") == [round(1 / 3, 6)]


def test_pruned_slot_shows_its_stage_without_a_module() -> None:
    slots = _slots()
    slot = slots[0]
    slot.germinate(BlueprintAction.NORM, GerminationStyle.LINEAR_ADD, 3, 1.0, torch.Generator(), 0.0)
    slot.tick(True)
    slot.prune(0, AlphaCurve.LINEAR, 12.0)
    slot.tick(True)
    obs = build_observation(
        LAYOUT, slots, SignalTracker().snapshot(), epoch=0, episode_length=40, last_action_success=True, last_op=0
    )
    assert _read(obs.features, "is_active", "r0c0") == [0.0]
    assert _read(obs.features, "stage", "r0c0")[8] == 1.0  # EMBARGOED = index 8 of STAGE_ORDER
    assert obs.blueprint_indices.tolist() == [-1, -1, -1]
    assert _read(obs.features, "val_loss") == [UNKNOWN]  # nothing measured yet
    assert all(math.isfinite(v) for v in obs.features.tolist())


@pytest.mark.parametrize("max_seeds,germinate_ok", [(0, True), (1, False), (2, True)])
def test_masks_count_live_and_fossilized_seeds(max_seeds: int, germinate_ok: bool) -> None:
    slots = _slots()
    slot = slots[0]
    slot.germinate(BlueprintAction.MLP, GerminationStyle.LINEAR_ADD, 0, 1.0, torch.Generator(), 0.0)
    slot.tick(True)
    slot.record_gradients(GradientStats(1.0, True, 0.0, 0.0))
    slot.tick(True)
    slot.record_contribution(1.0)
    assert slot.fossilize()
    masks = build_masks(
        slots, slot_config=CONFIG, topology="mlp", max_seeds=max_seeds, min_prune_age=3, auto_advance=True
    )
    assert bool(masks.heads["op"][LifecycleOp.GERMINATE]) is germinate_ok
    assert not masks.heads["op"][LifecycleOp.PRUNE] and not masks.heads["op"][LifecycleOp.ADVANCE]
