"""The alpha controller: a pure scalar scheduler of one seed's blend amplitude.

One tick per host epoch. A retarget starts a ramp from the current alpha to a target over
``steps`` ticks along a curve; the ramp lands *exactly* on the target on its last tick and the
controller returns to HOLD. ``steps = 0`` snaps instantly. A retarget while a ramp is running is
refused (:class:`AlphaRetargetError`): the policy may only change course from an idle controller.

:class:`AlphaController` is an immutable value; ``retarget`` and ``tick`` return new controllers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from esper.tamiyo.contract import AlphaCurve, AlphaMode

#: Smallest sigmoid steepness used (a flatter sigmoid would divide by ~0 in the normalisation).
MIN_STEEPNESS = 0.1


class AlphaRetargetError(ValueError):
    """A retarget was requested while the controller is still ramping (mode UP or DOWN)."""


def _sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def curve_progress(t: float, curve: AlphaCurve | int, steepness: float = 12.0) -> float:
    """Eased progress ``p(t)`` in [0, 1] for ``t`` in [0, 1] (clamped); ``p(0) = 0``, ``p(1) = 1``.

    LINEAR ``p = t``; COSINE ``p = (1 − cos πt) / 2``; SIGMOID the logistic curve of steepness
    ``k`` (floored at 0.1) rescaled to pass through 0 and 1:
    ``(σ(k(t − ½)) − σ(−k/2)) / (σ(k/2) − σ(−k/2))``.
    """
    t = min(max(t, 0.0), 1.0)
    kind = AlphaCurve(curve)
    if kind == AlphaCurve.LINEAR:
        return t
    if kind == AlphaCurve.COSINE:
        return 0.5 * (1.0 - math.cos(math.pi * t))
    k = max(steepness, MIN_STEEPNESS)
    low, high = _sigmoid(-k / 2.0), _sigmoid(k / 2.0)
    return (_sigmoid(k * (t - 0.5)) - low) / (high - low)


@dataclass(frozen=True, slots=True)
class AlphaController:
    """State of one seed's alpha schedule. Alphas are in [0, 1]; steps are ticks (epochs)."""

    alpha: float = 0.0
    """Current amplitude."""
    start: float = 0.0
    """Alpha when the current (or last) ramp began."""
    target: float = 0.0
    """Where the current (or last) ramp ends."""
    mode: AlphaMode = AlphaMode.HOLD
    """HOLD when idle, UP / DOWN while ramping."""
    curve: AlphaCurve = AlphaCurve.LINEAR
    """Easing curve of the ramp."""
    steepness: float = 12.0
    """Sigmoid steepness (unused by LINEAR / COSINE)."""
    steps_total: int = 0
    """Ramp length in ticks (0 for an instant snap)."""
    steps_done: int = 0
    """Ticks done in the current ramp."""
    last_delta: float = 0.0
    """Alpha change made by the last tick or retarget (0 after an idle tick)."""

    def __post_init__(self) -> None:
        for name in ("alpha", "start", "target"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.steps_total < 0 or not 0 <= self.steps_done <= max(self.steps_total, 0):
            raise ValueError(f"need 0 <= steps_done <= steps_total, got {self.steps_done} / {self.steps_total}")

    @property
    def idle(self) -> bool:
        """True in HOLD mode (retarget allowed)."""
        return self.mode == AlphaMode.HOLD

    @property
    def steps_remaining(self) -> int:
        """Ticks left in the current ramp (0 when idle)."""
        return 0 if self.idle else self.steps_total - self.steps_done

    def retarget(
        self, target: float, steps: int, curve: AlphaCurve | int = AlphaCurve.LINEAR, steepness: float = 12.0
    ) -> AlphaController:
        """Start a ramp from the current alpha to ``target`` over ``steps`` ticks (0 = snap now).

        Raises ``AlphaRetargetError`` while a ramp is running, ``ValueError`` for a target outside
        [0, 1] or negative ``steps``.
        """
        if not self.idle:
            raise AlphaRetargetError(
                f"cannot retarget to {target!r}: a {self.mode.name} ramp to {self.target} is running "
                f"({self.steps_done}/{self.steps_total} ticks done)"
            )
        if not (math.isfinite(target) and 0.0 <= target <= 1.0):
            raise ValueError(f"alpha target must be in [0, 1], got {target!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"ramp steps must be an int >= 0, got {steps!r}")
        kind = AlphaCurve(curve)
        if steps == 0 or target == self.alpha:
            return AlphaController(target, target, target, AlphaMode.HOLD, kind, steepness, 0, 0, target - self.alpha)
        mode = AlphaMode.UP if target > self.alpha else AlphaMode.DOWN
        return AlphaController(self.alpha, self.alpha, target, mode, kind, steepness, steps, 0, 0.0)

    def tick(self) -> AlphaController:
        """Advance one epoch: move along the curve, landing exactly on ``target`` at the last tick."""
        if self.idle:
            return self if self.last_delta == 0.0 else replace(self, last_delta=0.0)
        done = self.steps_done + 1
        if done >= self.steps_total:
            return replace(
                self,
                alpha=self.target,
                mode=AlphaMode.HOLD,
                steps_done=self.steps_total,
                last_delta=self.target - self.alpha,
            )
        p = curve_progress(done / self.steps_total, self.curve, self.steepness)
        low, high = sorted((self.start, self.target))
        alpha = min(max(self.start + (self.target - self.start) * p, low), high)
        return replace(self, alpha=alpha, steps_done=done, last_delta=alpha - self.alpha)
