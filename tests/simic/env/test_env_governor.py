"""Governor: divergence detection, and an injected NaN restoring the snapshot and ending the episode."""

from __future__ import annotations

import math

import pytest
import torch
from scripted_actions import WAIT

from esper.simic.env import EnvConfig, HostTraining, LifecycleSettings, MorphogeneticEnv, SyntheticTask
from esper.simic.env.governor import Governor, GovernorSettings
from esper.tamiyo.contract import BlueprintAction, LifecycleOp, SeedStage


def test_non_finite_loss_panics_immediately() -> None:
    governor = Governor(GovernorSettings())
    for loss in (math.nan, math.inf):
        verdict = governor.check(loss)
        assert verdict.panic and verdict.reason == "non_finite_loss"


def test_divergence_needs_patience_consecutive_anomalies() -> None:
    governor = Governor(GovernorSettings(window=10, min_samples=5, patience=2, sigma=6.0, factor=3.0, min_loss=5.0))
    for loss in (2.0, 1.8, 1.6, 1.5, 1.4):
        assert not governor.check(loss).anomaly
    first = governor.check(50.0)
    assert first.anomaly and not first.panic and governor.anomaly_pending
    assert not governor.check(1.3).anomaly  # a healthy loss clears the streak
    assert not governor.check(50.0).panic
    second = governor.check(60.0)
    assert second.panic and second.reason == "divergence"


def test_no_divergence_before_min_samples_or_below_min_loss() -> None:
    governor = Governor(GovernorSettings(min_samples=5, patience=1, min_loss=5.0))
    for loss in (0.1, 0.1, 0.1, 0.1):
        governor.check(loss)
    assert not governor.is_anomalous(100.0)  # only 4 samples in the window
    governor.check(0.1)
    assert not governor.is_anomalous(4.0)  # far above the mean, but under min_loss
    assert governor.check(6.0).panic


@pytest.fixture(scope="module")
def config() -> EnvConfig:
    return EnvConfig(
        task="synthetic",
        synthetic=SyntheticTask(train_size=64, val_size=32),
        host_training=HostTraining(batch_size=32),
        episode_length=20,
        lifecycle=LifecycleSettings(training_dwell=2),
    )


def test_injected_nan_restores_snapshot_and_terminates(config: EnvConfig) -> None:
    env = MorphogeneticEnv(config)
    start = env.reset(seed=3).info.val_accuracy
    for _ in range(4):
        env.step(WAIT)
    germinate = {**WAIT, "op": int(LifecycleOp.GERMINATE), "slot": 1, "blueprint": int(BlueprintAction.MLP)}
    grown = env.step(germinate)  # epoch 5: snapshot taken after this epoch's clean check
    assert env.model is not None and env.snapshot is not None
    snapshot = {k: v.clone() for k, v in env.snapshot.host.items()}
    assert all(torch.equal(v, snapshot[k]) for k, v in env.model.host.state_dict().items())
    assert env.model.slot("r0c1").stage == SeedStage.TRAINING
    with torch.no_grad():
        env.model.host.blocks[1][0].weight[0, 0] = math.nan  # type: ignore[index]

    result = env.step(WAIT)

    assert result.terminated and not result.truncated and result.info.governor_rollback
    assert result.info.rollback_reason == "non_finite_loss"
    restored = env.model.host.state_dict()
    assert restored.keys() == snapshot.keys()
    assert all(torch.equal(restored[k], snapshot[k]) for k in snapshot)
    assert env.model.slot("r0c1").stage == SeedStage.PRUNED  # live seed pruned
    # The failed episode's objective is −penalty, carried to the horizon: r_5 = γ^{20−1−5}·(−10) − o_5.
    parts = result.info.reward_components
    assert parts.governor_penalty == pytest.approx(0.99**14 * -10.0)
    assert parts.accuracy == -grown.info.val_accuracy  # o_5's terms with the sign of −o_5
    assert result.reward == pytest.approx(0.99**14 * -10.0 + parts.accuracy + parts.param_cost + parts.compute_cost)
    assert result.episode is not None and result.episode.objective == -10.0
    assert result.episode.discounted_return == pytest.approx(0.99**19 * -10.0 - start)
    assert math.isfinite(result.info.val_loss) and bool(torch.isfinite(result.obs.features).all())
    assert result.episode is not None and result.episode.rollbacks == 1
    assert env.host_sgd is not None and env.host_sgd.momentum is None  # momentum reset
