"""Determinism and bit-identical resume of ``train`` on CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from esper.simic.agent import PPOConfig
from esper.simic.training import vectorized
from esper.simic.training import CheckpointError, RunDirectoryError, TrainConfig, read_metrics, train


def _without_timings(path: Path) -> list[dict[str, Any]]:
    rows = read_metrics(path)
    for row in rows:
        del row["timings"]
    return rows


def _same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_identical_metrics(make_config: Callable[..., TrainConfig]) -> None:
    first = train(make_config("a"))
    second = train(make_config("b"))
    rows = _without_timings(Path(first.config.out_dir or "") / "metrics.jsonl")
    assert [r["round"] for r in rows] == [1, 2]
    assert rows == _without_timings(Path(second.config.out_dir or "") / "metrics.jsonl")
    assert _same_parameters(first.policy.state_dict(), second.policy.state_dict())
    other = train(make_config("c", seed=7))
    assert _without_timings(Path(other.config.out_dir or "") / "metrics.jsonl") != rows


def test_resume_is_bit_identical_to_a_straight_run(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    # One env per minibatch, so the agent's shuffle generator is state that must be restored too.
    run = {"num_envs": 3, "ppo": PPOConfig(update_epochs=2, num_minibatches=3)}
    straight = train(make_config("straight", rounds=3, **run))
    train(make_config("split", rounds=2, checkpoint_every=1, **run))
    resumed = train(make_config("split", rounds=3, **run), resume=tmp_path / "split" / "checkpoint_last.pt")
    assert [r.round for r in resumed.history] == [3]
    assert _without_timings(tmp_path / "split" / "metrics.jsonl") == _without_timings(
        tmp_path / "straight" / "metrics.jsonl"
    )
    assert _same_parameters(resumed.policy.state_dict(), straight.policy.state_dict())


def test_resume_truncates_metrics_written_after_the_checkpoint(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    train(make_config("run", rounds=3, checkpoint_every=1, keep_checkpoints=True))
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint_*.pt")) == [
        "checkpoint_last.pt",
        "checkpoint_round_0001.pt",
        "checkpoint_round_0002.pt",
        "checkpoint_round_0003.pt",
    ]
    resumed = train(make_config("run", rounds=3), resume=tmp_path / "run" / "checkpoint_round_0001.pt")
    assert [r.round for r in resumed.history] == [2, 3]
    assert [r["round"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3]


def test_a_crash_before_the_checkpoint_lands_resumes_cleanly(
    make_config: Callable[..., TrainConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after round 2's metrics line but before its checkpoint file: resuming from round 1
    drops that line, redoes round 2 and ends exactly like an uninterrupted run."""
    straight = train(make_config("straight", rounds=3))
    real_write = vectorized.write_checkpoint
    writes: list[Path] = []

    def crash_on_second_checkpoint(path: Path, checkpoint: Any) -> None:
        writes.append(path)
        if len(writes) == 2:
            raise KeyboardInterrupt("killed")
        real_write(path, checkpoint)

    monkeypatch.setattr(vectorized, "write_checkpoint", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(make_config("crashed", rounds=3, checkpoint_every=1))
    monkeypatch.setattr(vectorized, "write_checkpoint", real_write)
    assert [r["round"] for r in read_metrics(tmp_path / "crashed" / "metrics.jsonl")] == [1, 2]

    resumed = train(make_config("crashed", rounds=3), resume=tmp_path / "crashed" / "checkpoint_last.pt")
    assert [r.round for r in resumed.history] == [2, 3]
    assert _without_timings(tmp_path / "crashed" / "metrics.jsonl") == _without_timings(
        tmp_path / "straight" / "metrics.jsonl"
    )
    assert _same_parameters(resumed.policy.state_dict(), straight.policy.state_dict())


def test_resume_refuses_a_different_experiment(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    train(make_config("run"))
    checkpoint = tmp_path / "run" / "checkpoint_last.pt"
    with pytest.raises(CheckpointError, match=r"differs from the checkpoint's in \['num_envs', 'seed'\]"):
        train(make_config("other", rounds=4, num_envs=3, seed=1), resume=checkpoint)
    with pytest.raises(CheckpointError, match="already has 2 rounds, more than the 1"):
        train(make_config("other", rounds=1), resume=checkpoint)


def test_a_fresh_run_refuses_a_used_run_directory(make_config: Callable[..., TrainConfig]) -> None:
    train(make_config("run", rounds=1))
    with pytest.raises(RunDirectoryError, match="already contains a run"):
        train(make_config("run", rounds=1))


def test_without_out_dir_nothing_is_written(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    result = train(make_config(None, rounds=1))
    assert result.checkpoint is None and result.rounds_completed == 1
    assert list(tmp_path.iterdir()) == []
