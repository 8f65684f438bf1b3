"""The safety governor: detect a diverged model and roll it back to the last known-good snapshot.

Fed the main validation loss once per epoch (the reference's rules, window scaled for 40-epoch
episodes, see docs/design/reference-numbers.md):

- a NaN/Inf loss panics at once;
- a loss is *anomalous* when, with at least ``min_samples`` healthy losses in the window, it is
  above ``mean + sigma·std`` **and** above ``factor·mean`` **and** above ``min_loss``; anomalies
  are kept out of the window, and ``patience`` consecutive ones panic (divergence).

Snapshots hold the host's state (parameters and BatchNorm buffers) and the fossilized seeds'
states, cloned on the model's device. Live (not yet fossilized) seeds are never snapshotted:
a rollback prunes them. The environment takes a snapshot at reset, every ``snapshot_interval``
epochs when the check is clean (not while an anomaly is pending) and right after a fossilize.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

import torch

from esper.simic.env.config import GovernorSettings
from esper.simic.env.model import MorphogeneticModel
from esper.tamiyo.contract import SeedStage


@dataclass(frozen=True, slots=True)
class GovernorVerdict:
    """Outcome of one check."""

    panic: bool
    """Roll back now."""
    anomaly: bool
    """This loss was anomalous (or non-finite)."""
    reason: str | None = None
    """``"non_finite_loss"`` or ``"divergence"`` when ``panic``."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Last known-good weights: host state dict and ``{slot_id: {"seed": ..., "gate": ...}}`` of fossilized seeds."""

    host: dict[str, torch.Tensor]
    fossils: dict[str, dict[str, dict[str, torch.Tensor]]]


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def take_snapshot(model: MorphogeneticModel) -> Snapshot:
    """Copy the host and every fossilized seed (and gate)."""
    fossils: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for slot in model.all_slots():
        if slot.stage == SeedStage.FOSSILIZED and slot.seed is not None:
            parts = {"seed": _clone(slot.seed.state_dict())}
            if slot.gate is not None:
                parts["gate"] = _clone(slot.gate.state_dict())
            fossils[slot.slot_id] = parts
    return Snapshot(_clone(model.host.state_dict()), fossils)


def restore_snapshot(model: MorphogeneticModel, snapshot: Snapshot) -> None:
    """Load ``snapshot`` into the host and into the fossilized seeds it recorded (in place)."""
    model.host.load_state_dict(snapshot.host)
    for slot_id, parts in snapshot.fossils.items():
        slot = model.slot(slot_id)
        if slot.seed is not None:
            slot.seed.load_state_dict(parts["seed"])
        if slot.gate is not None and "gate" in parts:
            slot.gate.load_state_dict(parts["gate"])


class Governor:
    """Divergence detector with a rolling window of healthy validation losses."""

    def __init__(self, settings: GovernorSettings) -> None:
        self.settings = settings
        self._history: deque[float] = deque(maxlen=settings.window)
        self._consecutive = 0

    def reset(self) -> None:
        """Forget the history (new episode)."""
        self._history.clear()
        self._consecutive = 0

    @property
    def anomaly_pending(self) -> bool:
        """An anomaly was seen on the last check and has not yet been cleared by a healthy loss."""
        return self._consecutive > 0

    def is_anomalous(self, loss: float) -> bool:
        """Whether ``loss`` is far above the window's statistics (False until ``min_samples`` losses)."""
        s = self.settings
        if len(self._history) < s.min_samples:
            return False
        mean = statistics.fmean(self._history)
        std = statistics.pstdev(self._history, mu=mean)
        return loss > mean + s.sigma * std and loss > s.factor * mean and loss > s.min_loss

    def check(self, loss: float) -> GovernorVerdict:
        """Judge one epoch's validation loss; healthy losses enter the window."""
        if not math.isfinite(loss):
            self._consecutive += 1
            return GovernorVerdict(panic=True, anomaly=True, reason="non_finite_loss")
        if self.is_anomalous(loss):
            self._consecutive += 1
            panic = self._consecutive >= self.settings.patience
            return GovernorVerdict(panic=panic, anomaly=True, reason="divergence" if panic else None)
        self._consecutive = 0
        self._history.append(loss)
        return GovernorVerdict(panic=False, anomaly=False)
