"""EnvConfig validation and derived values."""

from __future__ import annotations

import pytest

from esper.simic.env import EnvConfig


def test_defaults_and_derived_values() -> None:
    config = EnvConfig()
    assert (config.task, config.host, config.impaired, config.episode_length) == ("digits", "mlp", True, 40)
    assert (config.training_dwell, config.min_prune_age, config.embargo_epochs, config.max_seeds) == (4, 3, 3, 0)
    assert config.topology == "mlp" and config.slot_config.num_slots == 3
    assert config.reward_config.gamma == config.gamma
    assert EnvConfig(host="cnn", slot_ids=["r0c2"]).slot_ids == ("r0c2",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"task": "mnist"}, "unknown task 'mnist'"),
        ({"host": "transformer"}, "unknown host 'transformer'"),
        ({"reward_mode": "escrow"}, "escrow"),
        ({"slot_ids": ("r0c3",)}, "r0c3"),
        ({"slot_ids": ("r1c0",)}, "r1c0"),
        ({"slot_ids": ("r0c0", "r0c0")}, "duplicate"),
        ({"slot_ids": ()}, "at least one"),
        ({"episode_length": 0}, "episode_length"),
        ({"gamma": 1.5}, "gamma"),
        ({"host_lr": 0.0}, "host_lr"),
        ({"seed_momentum": 1.0}, "seed_momentum"),
        ({"batch_size": 0}, "batch_size"),
        ({"governor_min_samples": 12}, "governor_min_samples"),
        ({"task": "cifar10"}, "data_dir"),
        ({"host_max_grad_norm": float("nan")}, "host_max_grad_norm"),
    ],
)
def test_invalid_values_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnvConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"episode_length": 4.0}, {"impaired": 1}, {"data_dir": 3}])
def test_wrong_types_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        EnvConfig(**kwargs)  # type: ignore[arg-type]
