"""A real training checkpoint that does not fit the run fails with one clear ``CheckpointError``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esper.simic.training import CheckpointError, TrainConfig, evaluate, read_checkpoint, train, write_checkpoint
from esper.simic.training.evaluation import EvalConfig


@pytest.fixture
def checkpoint(make_config: Callable[..., TrainConfig], tmp_path: Path) -> tuple[TrainConfig, Path]:
    config = make_config("run", rounds=1)
    train(config)
    return config, tmp_path / "run" / "checkpoint_last.pt"


def _tampered(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = read_checkpoint(path)
    edit(data)
    out = path.with_name("tampered.pt")
    write_checkpoint(out, data)
    return out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["policy"].update(slot_ids=["r0c0", "r0c2", "r0c1"]), "slot ids"),
        (lambda d: d["policy"].update(feature_dim=7), "feature size 7 does not match"),
        (lambda d: d["policy"].update(head_sizes=[3, 13, 4, 3, 3, 4, 5, 5]), "action space"),
        (lambda d: d["policy"].update(type="no-such-policy"), "policy type 'no-such-policy' is not available"),
        (lambda d: d["policy_state"].popitem(), "weights do not fit policy 'lstm'"),
        (
            lambda d: d["normalizers"]["obs"]["stats"].update(mean=d["normalizers"]["obs"]["stats"]["mean"][:3]),
            "cannot be restored",
        ),
    ],
)
def test_incompatible_checkpoints_fail_clearly_on_resume(
    checkpoint: tuple[TrainConfig, Path], edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    config, path = checkpoint
    bad = _tampered(path, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        train(TrainConfig.from_dict({**config.to_dict(), "rounds": 2}), resume=bad)
    assert "\n" not in str(info.value)


def test_incompatible_checkpoint_fails_clearly_in_evaluation(checkpoint: tuple[TrainConfig, Path]) -> None:
    _, path = checkpoint
    bad = _tampered(path, lambda d: d["policy"].update(feature_dim=7))
    with pytest.raises(CheckpointError, match="feature size 7"):
        evaluate(bad, EvalConfig(episodes=1, num_envs=1))
