"""Seed slot lifecycle: timelines with auto-advance, manual ADVANCE, prunes, cleanup, retargets, gates."""

from __future__ import annotations

import pytest
import torch

from esper.simic.env.slot import GradientStats, LifecycleError, SeedSlot, SlotSettings
from esper.tamiyo.contract import (
    AlphaCurve,
    AlphaMode,
    BlueprintAction,
    GerminationStyle,
    SeedStage,
)

HEALTHY = GradientStats(norm=1.0, finite=True, vanishing_fraction=0.0, exploding_fraction=0.0)
S = SeedStage


def _slot(dwell: int = 4, embargo: int = 3) -> SeedSlot:
    return SeedSlot("r0c0", (8,), "mlp", SlotSettings(training_dwell=dwell, embargo_epochs=embargo))


def _germinate(
    slot: SeedSlot, tempo: int = 3, target: float = 1.0, style: GerminationStyle = GerminationStyle.LINEAR_ADD
) -> None:
    slot.germinate(BlueprintAction.MLP, style, tempo, target, torch.Generator().manual_seed(0), accuracy=50.0)


def _epoch(slot: SeedSlot, auto: bool = True) -> None:
    """One env step without an op: tick, then the epoch's gradient record."""
    slot.tick(auto)
    slot.record_gradients(HEALTHY if slot.stage in (S.TRAINING, S.BLENDING, S.HOLDING, S.FOSSILIZED) else None)


def test_auto_advance_timeline() -> None:
    slot = _slot()
    _germinate(slot, tempo=3)
    stages, alphas = [], []
    for _ in range(9):
        _epoch(slot)
        stages.append(slot.stage)
        alphas.append(round(slot.alpha, 4))
    # TRAINING for exactly `training_dwell` epochs, then a 3-tick linear ramp that ends in HOLDING.
    assert stages == [S.TRAINING] * 4 + [S.BLENDING, S.BLENDING, S.HOLDING, S.HOLDING, S.HOLDING]
    assert alphas == [0.0] * 4 + [0.3333, 0.6667, 1.0, 1.0, 1.0]
    assert slot.age_epochs == 9 and slot.epochs_in_stage == 3
    assert slot.previous_stage == S.BLENDING and slot.previous_stage_epochs == 2


def test_partial_target_stays_blending_until_retarget() -> None:
    slot = _slot(dwell=0)
    _germinate(slot, tempo=3, target=0.5)
    for _ in range(6):
        _epoch(slot)
    assert slot.stage == S.BLENDING and slot.alpha == 0.5 and slot.controller.idle
    slot.set_alpha_target(1.0, 0, AlphaCurve.LINEAR, 12.0, GerminationStyle.LINEAR_ADD, torch.Generator())
    _epoch(slot)
    assert slot.stage == S.HOLDING


def test_manual_advance_when_auto_is_off() -> None:
    slot = _slot(dwell=2)
    _germinate(slot, tempo=0)
    _epoch(slot, auto=False)
    assert slot.stage == S.GERMINATED
    assert slot.advance() and slot.stage == S.TRAINING
    _epoch(slot, auto=False)
    assert not slot.advance()  # dwell not met (1 < 2)
    _epoch(slot, auto=False)
    assert slot.advance() and slot.stage == S.BLENDING and slot.alpha == 1.0  # tempo 0 snaps
    assert slot.advance() and slot.stage == S.HOLDING
    assert not slot.advance()  # HOLDING → FOSSILIZED is FOSSILIZE's job


def test_g2_needs_finite_measured_gradients() -> None:
    slot = _slot(dwell=1)
    _germinate(slot)
    slot.tick(True)
    for _ in range(3):
        slot.record_gradients(GradientStats(float("nan"), False, 0.0, 0.0))
        slot.tick(True)
    assert slot.stage == S.TRAINING
    slot.record_gradients(HEALTHY)
    slot.tick(True)
    assert slot.stage == S.BLENDING


def test_fossilize_needs_holding_and_a_measured_contribution() -> None:
    slot = _slot(dwell=0)
    _germinate(slot, tempo=0)
    assert not slot.fossilize()
    _epoch(slot)  # → TRAINING; gradients measured during the epoch
    _epoch(slot)  # G2 (dwell 0) → BLENDING, tempo 0 snaps to 1, G3 → HOLDING
    assert slot.stage == S.HOLDING and not slot.fossilize()
    slot.record_contribution(2.5)
    assert slot.fossilize() and slot.stage == S.FOSSILIZED and slot.alpha == 1.0
    assert slot.occupied and not slot.is_live
    with pytest.raises(LifecycleError):
        slot.prune(0, AlphaCurve.LINEAR, 12.0)
    _epoch(slot)
    assert slot.stage == S.FOSSILIZED  # terminal


def test_instant_prune_and_cleanup_pipeline() -> None:
    slot = _slot(embargo=3)
    _germinate(slot)
    _epoch(slot)
    slot.prune(0, AlphaCurve.LINEAR, 12.0)
    assert slot.stage == S.PRUNED and slot.seed is None and slot.sgd is None and slot.alpha == 0.0
    stages = []
    for _ in range(5):
        _epoch(slot)
        stages.append(slot.stage)
    assert stages == [S.EMBARGOED, S.EMBARGOED, S.EMBARGOED, S.RESETTING, S.DORMANT]
    assert slot.mask_state() is None and slot.blueprint is None and slot.age_epochs == 0


def test_scheduled_prune_ramps_down_frozen_then_prunes() -> None:
    slot = _slot(dwell=0)
    _germinate(slot, tempo=0)
    _epoch(slot)
    _epoch(slot)
    assert slot.stage == S.HOLDING
    slot.prune(3, AlphaCurve.LINEAR, 12.0)
    assert slot.stage == S.BLENDING and slot.controller.mode == AlphaMode.DOWN and slot.scheduled_prune
    assert slot.parameters_to_train() == []  # frozen during the DOWN ramp
    _epoch(slot)
    _epoch(slot)
    assert slot.stage == S.BLENDING and 0.0 < slot.alpha < 1.0
    _epoch(slot)
    assert slot.stage == S.PRUNED and slot.seed is None


def test_retarget_down_from_holding_freezes_until_ramp_ends() -> None:
    slot = _slot(dwell=0)
    _germinate(slot, tempo=0)
    _epoch(slot)
    _epoch(slot)
    slot.set_alpha_target(0.5, 3, AlphaCurve.COSINE, 12.0, GerminationStyle.LINEAR_MULTIPLY, torch.Generator())
    assert slot.stage == S.BLENDING and slot.parameters_to_train() == []
    with pytest.raises(LifecycleError, match="idle"):
        slot.set_alpha_target(1.0, 0, AlphaCurve.LINEAR, 12.0, GerminationStyle.LINEAR_ADD, torch.Generator())
    for _ in range(3):
        _epoch(slot)
    assert slot.alpha == 0.5 and slot.controller.idle and slot.parameters_to_train() != []


def test_switching_to_gate_builds_a_gate_and_trains_it() -> None:
    slot = _slot(dwell=0)
    _germinate(slot, tempo=0)
    _epoch(slot)
    _epoch(slot)
    params_before = slot.num_params
    slot.set_alpha_target(
        1.0, 0, AlphaCurve.LINEAR, 12.0, GerminationStyle.GATED_GATE, torch.Generator().manual_seed(1)
    )
    assert slot.gate is not None and slot.num_params > params_before
    assert slot.sgd is not None and slot.sgd.params == slot.parameters_to_train()


def test_illegal_operations_raise() -> None:
    slot = _slot()
    with pytest.raises(LifecycleError):
        slot.prune(0, AlphaCurve.LINEAR, 12.0)
    with pytest.raises(LifecycleError):
        slot.set_alpha_target(1.0, 0, AlphaCurve.LINEAR, 12.0, GerminationStyle.LINEAR_ADD, torch.Generator())
    _germinate(slot)
    with pytest.raises(LifecycleError, match="not DORMANT"):
        _germinate(slot)
    with pytest.raises(LifecycleError, match="GERMINATED"):  # GERMINATED may not jump to BLENDING
        slot.set_alpha_target(1.0, 0, AlphaCurve.LINEAR, 12.0, GerminationStyle.LINEAR_ADD, torch.Generator())
    assert not slot.fossilize() and slot.stage == S.GERMINATED  # nor to FOSSILIZED: refused, nothing changes
    with pytest.raises(ValueError, match="not available"):
        _slot().germinate(BlueprintAction.CONV_HEAVY, 0, 3, 1.0, torch.Generator(), 0.0)


def test_contribution_velocity_and_freshness() -> None:
    slot = _slot()
    _germinate(slot)
    slot.record_contribution(None)
    assert slot.epochs_since_contribution is None
    slot.record_contribution(2.0)
    slot.record_contribution(5.0)
    assert slot.contribution == 5.0 and slot.contribution_velocity == 3.0 and slot.epochs_since_contribution == 0
    slot.record_contribution(None)
    assert slot.epochs_since_contribution == 1 and slot.contribution == 5.0
