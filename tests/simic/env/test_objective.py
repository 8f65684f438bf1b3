"""The episode objective: accuracy net of the parameter and compute prices, on hand-worked numbers."""

from __future__ import annotations

import pytest
from scripted_actions import WAIT

from esper.simic.env import EnvConfig, MorphogeneticEnv, ObjectiveConfig, epoch_compute, objective_value
from esper.simic.env.config import HostTraining, SyntheticTask
from esper.tamiyo.contract import LifecycleOp


def test_objective_prices_parameters_per_thousand_and_compute_per_host_epoch() -> None:
    config = ObjectiveConfig(param_price=0.5, compute_price=0.02)
    # 90 % with 2,000 added parameters that cost 25 host-epochs: 90 − 1.0 − 0.5.
    assert objective_value(90.0, 2000, 25.0, config) == pytest.approx(88.5)
    assert objective_value(73.0, 0, 0.0, config) == 73.0
    assert objective_value(80.0, 4000, 10.0, ObjectiveConfig(0.0, 0.0)) == 80.0


def test_epoch_compute_is_seed_parameters_relative_to_the_host() -> None:
    assert epoch_compute(650, 1300) == 0.5
    assert epoch_compute(0, 1300) == 0.0
    with pytest.raises(ValueError, match="host_params must be >= 1"):
        epoch_compute(10, 0)


@pytest.mark.parametrize(("name", "value"), [("param_price", -1.0), ("compute_price", float("nan"))])
def test_prices_are_validated(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"objective.{name}"):
        ObjectiveConfig(**{name: value})


def test_episode_summary_reports_the_objective_of_its_final_model() -> None:
    env_config = EnvConfig(
        task="synthetic",
        episode_length=4,
        synthetic=SyntheticTask(train_size=64, val_size=32),
        host_training=HostTraining(batch_size=32),
    )
    env = MorphogeneticEnv(env_config)
    masks = env.reset(3).masks
    blueprint = int(masks.heads["blueprint"].nonzero()[0])
    germinate = dict(WAIT, op=int(LifecycleOp.GERMINATE), blueprint=blueprint)
    steps = [env.step(germinate)] + [env.step(WAIT) for _ in range(3)]
    summary = steps[-1].episode
    assert summary is not None and summary.seed_params > 0
    # The seed was in the model for all four epochs.
    assert summary.extra_compute == pytest.approx(4 * summary.seed_params / summary.host_params)
    expected = objective_value(summary.final_accuracy, summary.seed_params, summary.extra_compute, ObjectiveConfig())
    assert summary.objective == expected < summary.final_accuracy
