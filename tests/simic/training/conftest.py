"""Shared fixtures for the trainer tests: a tiny synthetic configuration (torch threads: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esper.simic.agent import PPOConfig
from esper.simic.env import EnvConfig, HostTraining, SyntheticTask
from esper.simic.training import TrainConfig

TINY_ENV = EnvConfig(
    task="synthetic",
    episode_length=4,
    synthetic=SyntheticTask(train_size=64, val_size=32),
    host_training=HostTraining(batch_size=32),
)
TINY_POLICY = {"hidden_size": 16, "lstm_hidden": 16}


@pytest.fixture
def tiny_env() -> EnvConfig:
    """A 4-step synthetic environment small enough for sub-second runs."""
    return TINY_ENV


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., TrainConfig]:
    """``make_config(out="a", **fields)``: a 2-env, 4-step synthetic run writing to ``tmp_path / out``."""

    def build(out: str | None = "run", **fields: Any) -> TrainConfig:
        values: dict[str, Any] = {
            "num_envs": 2,
            "rounds": 2,
            "env": TINY_ENV,
            "policy_kwargs": dict(TINY_POLICY),
            "ppo": PPOConfig(update_epochs=2),
            "out_dir": None if out is None else str(tmp_path / out),
        }
        values.update(fields)
        return TrainConfig(**values)

    return build
