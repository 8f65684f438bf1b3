"""The one stated objective of an episode: what a user wants from growing a network.

A researcher growing a network wants the best final model for what it costs. Esper measures an
episode by

    objective = final validation accuracy (percent)
                − param_price   · parameters added to the host (thousands)
                − compute_price · extra training compute spent over the episode (host-epochs)

*Parameters added* are those of every seed still in the network at the end (live or fossilized):
the model a user would deploy. *Extra compute* is what the seeds cost while they trained: each
epoch, a seed that runs in the forward and backward passes costs its parameter count relative to
the host's, so a seed as large as the host that trains for 10 epochs costs 10 host-epochs, and
the host alone costs nothing extra. Growing late therefore costs less compute but leaves less
time to train; growing big must buy accuracy. Both prices are in accuracy points, so the
objective reads as "accuracy, net of what it cost"; both are config values
(``EnvConfig.objective``), and setting them to 0 makes the objective the final accuracy alone.

The reward (``rewards.py``) is built from this objective so that the return PPO maximises ranks
policies exactly as the objective does; evaluation and ``study`` compare policies by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from esper.simic.checks import check_float


@dataclass(frozen=True, slots=True)
class ObjectiveConfig:
    """Prices of what growth costs, in accuracy points."""

    param_price: float = 0.5
    """Accuracy points per 1,000 parameters added to the host by the seeds kept at the end. At 0.5,
    doubling the default impaired digits MLP host (about 1.3k parameters) must buy 0.65 points."""
    compute_price: float = 0.02
    """Accuracy points per host-epoch of extra training compute (a seed as large as the host
    training for one epoch). At 0.02, such a seed trained for a whole 40-epoch episode costs 0.8
    points, so growing late is cheaper than growing early when it buys the same accuracy."""

    def __post_init__(self) -> None:
        check_float("objective.param_price", self.param_price)
        check_float("objective.compute_price", self.compute_price)


def epoch_compute(seed_params_trained: int, host_params: int) -> float:
    """Extra compute of one epoch in host-epochs: the trained seeds' parameters relative to the host's."""
    if host_params < 1:
        raise ValueError(f"host_params must be >= 1, got {host_params}")
    return seed_params_trained / host_params


def objective_value(accuracy: float, added_params: int, extra_compute: float, config: ObjectiveConfig) -> float:
    """``accuracy − param_price · added_params / 1000 − compute_price · extra_compute`` (see module docstring)."""
    return accuracy - config.param_price * added_params / 1000.0 - config.compute_price * extra_compute
