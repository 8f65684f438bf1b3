"""Per-episode training signals of the host: loss/accuracy history, plateau counter, stability latch.

The observation's base block needs the last few validation losses and accuracies, and the
heuristic policy waits for the host to stabilise before germinating. The tracker turns the
stream of per-epoch validation results into those signals (esper-lite's
SignalTracker). It is fed once per epoch, after validation, and reset at episode start.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from esper.tamiyo.contract import HISTORY_LENGTH


@dataclass(frozen=True, slots=True)
class SignalTrackerConfig:
    """Thresholds of the tracker (reference values)."""

    window: int = 10
    """Epochs of loss/accuracy history kept."""
    exported: int = HISTORY_LENGTH
    """Most recent epochs exported in the snapshot (the observation's history width, 5)."""
    plateau_threshold: float = 0.5
    """An epoch is a plateau epoch when ``|Δ accuracy| <`` this many accuracy points."""
    stable_low: float = -0.05
    """Lower (exclusive) bound of the relative loss improvement of a stable epoch (a loss rise under 5 %)."""
    stable_high: float = 0.03
    """Upper (exclusive) bound of the relative loss improvement of a stable epoch (a loss drop under 3 %)."""
    stable_epochs: int = 3
    """Consecutive stable epochs that trip the host-stabilised latch."""

    def __post_init__(self) -> None:
        if self.window < 1 or not 1 <= self.exported <= self.window:
            raise ValueError(
                f"need window >= 1 and 1 <= exported <= window, got window={self.window}, exported={self.exported}"
            )
        if not (math.isfinite(self.plateau_threshold) and self.plateau_threshold > 0):
            raise ValueError(f"plateau_threshold must be finite and > 0, got {self.plateau_threshold!r}")
        if not (
            math.isfinite(self.stable_low) and math.isfinite(self.stable_high) and self.stable_low < self.stable_high
        ):
            raise ValueError(f"need finite stable_low < stable_high, got {self.stable_low!r} and {self.stable_high!r}")
        if self.stable_epochs < 1:
            raise ValueError(f"stable_epochs must be >= 1, got {self.stable_epochs}")


@dataclass(frozen=True, slots=True)
class TrackerSignals:
    """Immutable snapshot of the tracker after an update (what the observation builder reads).

    Histories are oldest first, at most ``exported`` long and not padded: the observation builder
    pads them on the left with ``UNKNOWN``. Losses are raw cross-entropy; accuracies are percent.
    """

    epochs: int
    """Updates since the last reset."""
    val_loss: float | None
    """Latest validation loss (None before the first update)."""
    val_accuracy: float | None
    """Latest validation accuracy, percent (None before the first update)."""
    accuracy_delta: float
    """Latest per-epoch accuracy change, points (0.0 until two epochs were seen)."""
    loss_history: tuple[float, ...]
    """Last ``exported`` validation losses, oldest first."""
    accuracy_history: tuple[float, ...]
    """Last ``exported`` validation accuracies, oldest first."""
    plateau_epochs: int
    """Consecutive epochs, up to the latest, whose ``|Δ accuracy|`` was below the plateau threshold."""
    stable_streak: int
    """Consecutive epochs, up to the latest, whose relative loss improvement was in the stable band."""
    host_stabilized: bool
    """Latched: True once ``stable_streak`` reached ``stable_epochs``; stays True until reset."""


class SignalTracker:
    """Accumulates one episode's validation results into :class:`TrackerSignals`.

    Non-finite losses or accuracies never raise: such an epoch is neither a plateau nor a stable
    epoch (the governor handles the divergence itself).
    """

    def __init__(self, config: SignalTrackerConfig | None = None) -> None:
        self.config = config or SignalTrackerConfig()
        self._losses: deque[float] = deque(maxlen=self.config.window)
        self._accuracies: deque[float] = deque(maxlen=self.config.window)
        self._epochs: int
        self._plateau_epochs: int
        self._stable_streak: int
        self._stabilized: bool
        self.reset()

    def reset(self) -> None:
        """Forget the episode: empty histories, counters 0, latch released."""
        self._losses.clear()
        self._accuracies.clear()
        self._epochs = 0
        self._plateau_epochs = 0
        self._stable_streak = 0
        self._stabilized = False

    def update(self, val_loss: float, val_accuracy: float) -> TrackerSignals:
        """Record one epoch's validation loss (raw) and accuracy (percent); return the new snapshot."""
        cfg = self.config
        if self._losses:
            prev_loss, prev_acc = self._losses[-1], self._accuracies[-1]
            plateau = abs(val_accuracy - prev_acc) < cfg.plateau_threshold
            self._plateau_epochs = self._plateau_epochs + 1 if plateau else 0
            stable = self._is_stable(prev_loss, val_loss)
            self._stable_streak = self._stable_streak + 1 if stable else 0
            if self._stable_streak >= cfg.stable_epochs:
                self._stabilized = True
        self._losses.append(float(val_loss))
        self._accuracies.append(float(val_accuracy))
        self._epochs += 1
        return self.snapshot()

    def _is_stable(self, prev_loss: float, loss: float) -> bool:
        """Relative improvement ``(prev − loss) / prev`` strictly inside ``(stable_low, stable_high)``."""
        if not (math.isfinite(prev_loss) and math.isfinite(loss)) or prev_loss <= 0.0:
            return False
        improvement = (prev_loss - loss) / prev_loss
        return self.config.stable_low < improvement < self.config.stable_high

    def snapshot(self) -> TrackerSignals:
        """Current signals (valid before the first update too: empty histories, None values)."""
        n = self.config.exported
        losses, accuracies = tuple(self._losses)[-n:], tuple(self._accuracies)[-n:]
        delta = self._accuracies[-1] - self._accuracies[-2] if len(self._accuracies) >= 2 else 0.0
        return TrackerSignals(
            epochs=self._epochs,
            val_loss=losses[-1] if losses else None,
            val_accuracy=accuracies[-1] if accuracies else None,
            accuracy_delta=delta,
            loss_history=losses,
            accuracy_history=accuracies,
            plateau_epochs=self._plateau_epochs,
            stable_streak=self._stable_streak,
            host_stabilized=self._stabilized,
        )
