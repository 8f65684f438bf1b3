"""SignalTracker: histories, plateau counter, host-stabilised latch (esper.simic.env.signals)."""

from __future__ import annotations

import math

import pytest

from esper.simic.env.signals import SignalTracker, SignalTrackerConfig, TrackerSignals


def feed(tracker: SignalTracker, losses: list[float], accuracies: list[float] | None = None) -> TrackerSignals:
    accuracies = accuracies or [10.0 * i for i in range(len(losses))]  # 10-point steps: never a plateau
    snap = tracker.snapshot()
    for loss, acc in zip(losses, accuracies, strict=True):
        snap = tracker.update(loss, acc)
    return snap


def test_empty_snapshot() -> None:
    snap = SignalTracker().snapshot()
    assert snap == TrackerSignals(
        epochs=0,
        val_loss=None,
        val_accuracy=None,
        accuracy_delta=0.0,
        loss_history=(),
        accuracy_history=(),
        plateau_epochs=0,
        stable_streak=0,
        host_stabilized=False,
    )


def test_history_exports_last_five_oldest_first() -> None:
    tracker = SignalTracker()
    snap = feed(tracker, [float(i) for i in range(1, 13)], [float(i) for i in range(12)])
    assert snap.epochs == 12
    assert snap.loss_history == (8.0, 9.0, 10.0, 11.0, 12.0)
    assert snap.accuracy_history == (7.0, 8.0, 9.0, 10.0, 11.0)
    assert (snap.val_loss, snap.val_accuracy, snap.accuracy_delta) == (12.0, 11.0, 1.0)


def test_short_history_is_not_padded() -> None:
    snap = feed(SignalTracker(), [2.0, 1.5], [40.0, 45.5])
    assert snap.loss_history == (2.0, 1.5)
    assert snap.accuracy_history == (40.0, 45.5)
    assert snap.accuracy_delta == 5.5


def test_plateau_counter_counts_consecutive_small_changes() -> None:
    tracker = SignalTracker()
    counts = [tracker.update(1.0, acc).plateau_epochs for acc in (50.0, 50.4, 50.0, 51.0, 50.6, 50.1)]
    # first epoch has no change; |Δ| = 0.4, 0.4 plateau; 1.0 breaks; 0.4 plateau; 0.5 is not < 0.5
    assert counts == [0, 1, 2, 0, 1, 0]


@pytest.mark.parametrize(
    ("improvement", "stable"),
    [
        (0.0, True),
        (0.029, True),
        (0.03, False),  # upper bound excluded: a 3 % drop is still learning
        (-0.049, True),
        (-0.05, False),  # lower bound excluded: a 5 % rise is instability
        (0.2, False),
    ],
)
def test_stable_band_boundaries(improvement: float, stable: bool) -> None:
    tracker = SignalTracker()
    tracker.update(1.0, 0.0)
    snap = tracker.update(1.0 - improvement, 0.0)
    assert snap.stable_streak == int(stable)


def test_latch_trips_after_three_stable_epochs_and_first_epoch_never_counts() -> None:
    tracker = SignalTracker()
    snaps = [tracker.update(1.0, 0.0) for _ in range(4)]
    # 4 flat epochs: the first has no predecessor, so the streak is 0, 1, 2, 3
    assert [s.stable_streak for s in snaps] == [0, 1, 2, 3]
    assert [s.host_stabilized for s in snaps] == [False, False, False, True]


def test_streak_resets_and_latch_stays_set() -> None:
    tracker = SignalTracker()
    losses = [2.0, 1.0, 0.99, 0.98, 0.5, 0.49, math.nan, 0.49]
    snaps = [tracker.update(loss, 0.0) for loss in losses]
    assert [s.stable_streak for s in snaps] == [0, 0, 1, 2, 0, 1, 0, 0]
    assert not any(s.host_stabilized for s in snaps)
    snap = feed(tracker, [0.49, 0.49, 0.49, 0.1], [0.0] * 4)
    assert snap.stable_streak == 0 and snap.host_stabilized  # tripped at the third flat epoch, then latched


def test_non_finite_inputs_never_raise() -> None:
    tracker = SignalTracker()
    tracker.update(math.nan, math.nan)
    snap = tracker.update(math.inf, 50.0)
    assert snap.plateau_epochs == 0 and snap.stable_streak == 0
    assert math.isinf(snap.loss_history[-1])


def test_reset_clears_everything() -> None:
    tracker = SignalTracker()
    feed(tracker, [1.0] * 6, [50.0] * 6)
    assert tracker.snapshot().host_stabilized
    tracker.reset()
    assert tracker.snapshot() == SignalTracker().snapshot()
    assert tracker.update(1.0, 50.0).stable_streak == 0  # first epoch after reset never counts


def test_custom_config() -> None:
    tracker = SignalTracker(SignalTrackerConfig(window=3, exported=2, stable_epochs=1, plateau_threshold=2.0))
    snap = feed(tracker, [1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert snap.loss_history == (1.0, 1.0) and snap.host_stabilized and snap.plateau_epochs == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0},
        {"window": 4, "exported": 5},
        {"plateau_threshold": 0.0},
        {"stable_low": 0.1, "stable_high": 0.0},
        {"stable_epochs": 0},
    ],
)
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SignalTrackerConfig(**kwargs)  # type: ignore[arg-type]
