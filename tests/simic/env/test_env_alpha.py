"""Alpha controller: curve values, exact landing on the last tick, instant snaps, refused retargets."""

from __future__ import annotations

import math

import pytest

from esper.simic.env.alpha import AlphaController, AlphaRetargetError, curve_progress
from esper.tamiyo.contract import ALPHA_CURVES, ALPHA_SPEED_TICKS, TEMPO_EPOCHS, AlphaCurve, AlphaMode


def test_curve_progress_hand_values() -> None:
    assert [curve_progress(t / 3, AlphaCurve.LINEAR) for t in (1, 2, 3)] == [1 / 3, 2 / 3, 1.0]
    assert curve_progress(0.5, AlphaCurve.COSINE) == pytest.approx(0.5)
    assert curve_progress(1 / 3, AlphaCurve.COSINE) == pytest.approx(0.25)
    # Reference progress values: 3 steps, sigmoid k=12 → .12 .88 1; 5 steps, k=6 → .10 .34 .66 .90 1.
    assert [round(curve_progress(t / 3, AlphaCurve.SIGMOID, 12.0), 2) for t in (1, 2, 3)] == [0.12, 0.88, 1.0]
    assert [round(curve_progress(t / 5, AlphaCurve.SIGMOID, 6.0), 2) for t in range(1, 6)] == [
        0.10,
        0.34,
        0.66,
        0.90,
        1.0,
    ]
    for curve, k in ALPHA_CURVES:
        assert curve_progress(0.0, curve, k) == pytest.approx(0.0, abs=1e-12)
        assert curve_progress(1.0, curve, k) == pytest.approx(1.0)


@pytest.mark.parametrize("curve,steepness", ALPHA_CURVES)
@pytest.mark.parametrize("steps", sorted(set(ALPHA_SPEED_TICKS + TEMPO_EPOCHS)))
@pytest.mark.parametrize("start,target", [(0.0, 1.0), (0.0, 0.5), (1.0, 0.0), (0.7, 0.5), (0.5, 0.7)])
def test_ramp_lands_exactly_on_last_tick(
    curve: AlphaCurve, steepness: float, steps: int, start: float, target: float
) -> None:
    ctrl = AlphaController(start, start, start).retarget(target, steps, curve, steepness)
    if steps == 0:
        assert ctrl.alpha == target and ctrl.mode == AlphaMode.HOLD
        return
    assert ctrl.mode == (AlphaMode.UP if target > start else AlphaMode.DOWN)
    previous = ctrl.alpha
    for tick in range(1, steps + 1):
        ctrl = ctrl.tick()
        low, high = sorted((start, target))
        assert low <= ctrl.alpha <= high
        assert (ctrl.alpha - previous) * (target - start) >= 0.0  # monotone towards the target
        previous = ctrl.alpha
        if tick < steps:
            assert ctrl.mode != AlphaMode.HOLD and ctrl.steps_remaining == steps - tick
    assert ctrl.alpha == target  # exact, not approximately
    assert ctrl.mode == AlphaMode.HOLD and ctrl.steps_remaining == 0
    assert ctrl.tick().alpha == target and ctrl.tick().last_delta == 0.0


def test_retarget_refused_while_ramping() -> None:
    ctrl = AlphaController().retarget(1.0, 5, AlphaCurve.LINEAR)
    with pytest.raises(AlphaRetargetError, match="UP ramp"):
        ctrl.retarget(0.5, 3)
    ctrl = ctrl.tick()
    with pytest.raises(AlphaRetargetError):
        ctrl.retarget(0.5, 0)
    for _ in range(4):
        ctrl = ctrl.tick()
    assert ctrl.retarget(0.5, 0).alpha == 0.5  # idle again: allowed


def test_last_delta() -> None:
    ctrl = AlphaController().retarget(1.0, 4, AlphaCurve.LINEAR)
    assert ctrl.last_delta == 0.0
    assert ctrl.tick().last_delta == pytest.approx(0.25)
    snapped = AlphaController(0.2, 0.2, 0.2).retarget(0.7, 0)
    assert snapped.last_delta == pytest.approx(0.5) and snapped.tick().last_delta == 0.0


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_retarget_rejects_bad_target(bad: float) -> None:
    with pytest.raises(ValueError, match="target"):
        AlphaController().retarget(bad, 3)


def test_retarget_rejects_negative_steps() -> None:
    with pytest.raises(ValueError, match="steps"):
        AlphaController().retarget(1.0, -1)
