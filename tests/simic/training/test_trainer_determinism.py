"""Determinism and bit-identical resume of ``train`` on CPU."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from esper.simic.agent import PPOConfig
from esper.simic.training import CheckpointError, RunDirectoryError, TrainConfig, read_metrics, train, vectorized
from esper.simic.training.metrics import NullSink, RoundRecord, RunStart
from esper.simic.training.run_dir import RunDirectory, RunDirectoryBusyError


def _without_timings(path: Path) -> list[dict[str, Any]]:
    rows = read_metrics(path)
    for row in rows:
        del row["timings"]
    return rows


def _same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Recorder(NullSink):
    """Keeps the run's notices; ``crash_at``: raise KeyboardInterrupt (a kill) once that round is recorded."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.crash_at = crash_at
        self.notices: tuple[str, ...] = ()

    def on_run_start(self, start: RunStart) -> None:
        self.notices = start.notices

    def on_round(self, record: RoundRecord) -> None:
        if record.round == self.crash_at:
            raise KeyboardInterrupt("killed")


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


def test_same_seed_gives_identical_metrics(make_config: Callable[..., TrainConfig]) -> None:
    first = train(make_config("a"))
    second = train(make_config("b"))
    rows = _without_timings(Path(first.config.out_dir or "") / "metrics.jsonl")
    assert [r["round"] for r in rows] == [1, 2]
    assert rows == _without_timings(Path(second.config.out_dir or "") / "metrics.jsonl")
    assert _same_parameters(first.policy.state_dict(), second.policy.state_dict())
    other = train(make_config("c", seed=7))
    assert _without_timings(Path(other.config.out_dir or "") / "metrics.jsonl") != rows


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_resume_is_bit_identical_to_a_straight_run(
    make_config: Callable[..., TrainConfig], tmp_path: Path, engine: str
) -> None:
    # One env per minibatch, so the agent's shuffle generator is state that must be restored too.
    run = {"num_envs": 3, "engine": engine, "ppo": PPOConfig(update_epochs=2, num_minibatches=3)}
    straight = train(make_config("straight", rounds=3, **run))
    train(make_config("split", rounds=2, checkpoint_every=1, **run))
    resumed = train(make_config("split", rounds=3, **run), resume=tmp_path / "split" / "checkpoint_last.pt")
    assert [r.round for r in resumed.history] == [3]
    assert _without_timings(tmp_path / "split" / "metrics.jsonl") == _without_timings(
        tmp_path / "straight" / "metrics.jsonl"
    )
    assert _same_parameters(resumed.policy.state_dict(), straight.policy.state_dict())
    # summary.json describes the whole run, not only the invocation that resumed it.
    rows = read_metrics(tmp_path / "split" / "metrics.jsonl")
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    accuracies = [row["mean_final_accuracy"] for row in rows]
    assert summary == {
        "rounds_completed": 3,
        "episodes_completed": 9,
        "wall_time_s": resumed.summary.wall_time_s,
        "train_time_s": pytest.approx(sum(row["timings"]["total_s"] for row in rows)),
        "final_mean_objective": rows[-1]["mean_objective"],
        "final_mean_discounted_return": rows[-1]["mean_discounted_return"],
        "final_mean_accuracy": accuracies[-1],
        "best_mean_accuracy": max(accuracies),
        "best_round": accuracies.index(max(accuracies)) + 1,
        "checkpoint": str(tmp_path / "split" / "checkpoint_last.pt"),
    }
    assert resumed.summary.best_mean_accuracy == straight.summary.best_mean_accuracy


def test_resume_auto_continues_the_latest_checkpoint_or_starts_the_run(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    started = train(make_config("auto", rounds=1), resume="auto")
    assert [r.round for r in started.history] == [1]
    resumed = train(make_config("auto", rounds=2), resume="auto")
    assert [r.round for r in resumed.history] == [2]
    train(make_config("straight", rounds=2))
    assert _without_timings(tmp_path / "auto" / "metrics.jsonl") == _without_timings(
        tmp_path / "straight" / "metrics.jsonl"
    )
    with pytest.raises(RunDirectoryError, match="resume 'auto' needs the run directory"):
        train(make_config(None), resume="auto")


def test_a_crash_before_the_first_checkpoint_starts_the_run_again(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    """Killed in the last round of a run that checkpoints only at the end: the same command again (or
    ``resume="auto"``) starts over from round 0, says so, and ends exactly like an uninterrupted run."""
    straight = train(make_config("straight", checkpoint_every=0))
    for resume in (None, "auto"):
        with pytest.raises(KeyboardInterrupt):  # after round 2's metrics line, before the final checkpoint
            train(make_config("crashed", checkpoint_every=0), sink=_Recorder(crash_at=2))
        assert [r["round"] for r in read_metrics(tmp_path / "crashed" / "metrics.jsonl")] == [1, 2]
        assert not (tmp_path / "crashed" / "checkpoint_last.pt").exists()
        recorder = _Recorder()
        again = train(make_config("crashed", checkpoint_every=0), resume=resume, sink=recorder)
        assert recorder.notices == (
            f"no checkpoint in {str(tmp_path / 'crashed')!r}: starting the run again from round 0, dropping 2 "
            "metrics line(s) of the interrupted attempt",
        )
        assert [r.round for r in again.history] == [1, 2]
        assert _without_timings(tmp_path / "crashed" / "metrics.jsonl") == _without_timings(
            tmp_path / "straight" / "metrics.jsonl"
        )
        assert _same_parameters(again.policy.state_dict(), straight.policy.state_dict())
        (tmp_path / "crashed" / "checkpoint_last.pt").unlink()  # back to "crashed before any checkpoint"
        (tmp_path / "crashed" / "metrics.jsonl").unlink()


def test_a_resume_with_nothing_left_to_run_changes_no_file(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    first = train(make_config("run", rounds=2))
    before = _snapshot(tmp_path / "run")
    recorder = _Recorder()
    again = train(make_config("run", rounds=2), resume=tmp_path / "run" / "checkpoint_last.pt", sink=recorder)
    assert _snapshot(tmp_path / "run") == before
    assert again.history == () and again.rounds_completed == 2
    assert again.checkpoint == tmp_path / "run" / "checkpoint_last.pt"
    assert (again.summary.best_mean_accuracy, again.summary.final_mean_objective) == (
        first.summary.best_mean_accuracy,
        first.summary.final_mean_objective,
    )
    assert recorder.notices[-1].endswith("already has all 2 rounds: nothing to train, no file changed")


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


_TIMES = ("wall_time_s", "train_time_s", "checkpoint")


def test_a_resume_into_another_directory_starts_with_the_source_runs_history(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    """``--resume a/checkpoint_last.pt --out b``: b holds the whole run, as if it had run there all along."""
    straight = train(make_config("straight", rounds=4))
    train(make_config("a", rounds=2))
    source = _snapshot(tmp_path / "a")
    recorder = _Recorder()
    resumed = train(make_config("b", rounds=4), resume=tmp_path / "a" / "checkpoint_last.pt", sink=recorder)
    assert [r.round for r in resumed.history] == [3, 4]
    assert recorder.notices == (
        f"copied the metrics of rounds 1-2 from {str(tmp_path / 'a' / 'metrics.jsonl')!r}: this run directory "
        "holds the whole run",
    )
    assert _snapshot(tmp_path / "a") == source
    assert _without_timings(tmp_path / "b" / "metrics.jsonl") == _without_timings(
        tmp_path / "straight" / "metrics.jsonl"
    )
    rows = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert rows[:2] == read_metrics(tmp_path / "a" / "metrics.jsonl")  # copied, timings included
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    reference = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert {k: v for k, v in summary.items() if k not in _TIMES} == {
        k: v for k, v in reference.items() if k not in _TIMES
    }
    assert summary["best_mean_accuracy"] == straight.summary.best_mean_accuracy
    assert summary["train_time_s"] == pytest.approx(sum(row["timings"]["total_s"] for row in rows))
    assert summary["checkpoint"] == str(tmp_path / "b" / "checkpoint_last.pt")


def test_a_resume_from_a_checkpoint_without_its_history_says_what_the_summary_covers(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    train(make_config("a", rounds=2))
    lone = tmp_path / "lone" / "checkpoint_last.pt"
    lone.parent.mkdir()
    lone.write_bytes((tmp_path / "a" / "checkpoint_last.pt").read_bytes())
    recorder = _Recorder()
    resumed = train(make_config("b", rounds=3), resume=lone, sink=recorder)
    assert recorder.notices == (
        f"no metrics of rounds 1-2 beside {str(lone)!r} (no config.json of this run in "
        f"{str(lone.parent)!r}): {str(tmp_path / 'b')!r} records rounds 3 on, and its summary covers only them",
    )
    assert [r["round"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")] == [3]
    assert resumed.summary.best_round == 3


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
        if len(writes) == 2:  # killed mid-write: the temporary file stays behind
            path.with_name(f".{path.name}.0123abcd.tmp").write_bytes(b"half a checkpoint")
            raise KeyboardInterrupt("killed")
        real_write(path, checkpoint)

    monkeypatch.setattr(vectorized, "write_checkpoint", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(make_config("crashed", rounds=3, checkpoint_every=1))
    monkeypatch.setattr(vectorized, "write_checkpoint", real_write)
    assert [r["round"] for r in read_metrics(tmp_path / "crashed" / "metrics.jsonl")] == [1, 2]

    recorder = _Recorder()
    resumed = train(make_config("crashed", rounds=3), resume=tmp_path / "crashed" / "checkpoint_last.pt", sink=recorder)
    assert recorder.notices == (
        "removed 1 stale temporary file(s) left by an interrupted write: ['.checkpoint_last.pt.0123abcd.tmp']",
    )
    assert not list((tmp_path / "crashed").glob(".*.tmp"))
    assert [r.round for r in resumed.history] == [2, 3]
    assert _without_timings(tmp_path / "crashed" / "metrics.jsonl") == _without_timings(
        tmp_path / "straight" / "metrics.jsonl"
    )
    assert _same_parameters(resumed.policy.state_dict(), straight.policy.state_dict())


def test_resume_refuses_a_different_experiment(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    train(make_config("run"))
    checkpoint = tmp_path / "run" / "checkpoint_last.pt"
    with pytest.raises(CheckpointError, match=r"\(num_envs: checkpoint 2 vs now 3; seed: checkpoint 42 vs now 1\)"):
        train(make_config("other", rounds=4, num_envs=3, seed=1), resume=checkpoint)
    with pytest.raises(CheckpointError, match=r"\(num_threads: checkpoint 1 vs now 2\)"):
        train(make_config("other", rounds=4, num_threads=2), resume=checkpoint)
    with pytest.raises(CheckpointError, match="already has 2 rounds, more than the 1"):
        train(make_config("other", rounds=1), resume=checkpoint)


def test_a_fresh_run_refuses_a_used_run_directory(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    train(make_config("run", rounds=1))
    checkpoint = tmp_path / "run" / "checkpoint_last.pt"
    with pytest.raises(RunDirectoryError, match=r"already holds this run up to checkpoint_last\.pt") as info:
        train(make_config("run", rounds=1))
    assert f"continue it with --resume {shlex.quote(str(checkpoint))}" in str(info.value)
    with pytest.raises(RunDirectoryError, match=r"config\.json' belongs to another run \(seed: config\.json 42"):
        train(make_config("run", rounds=1, seed=3))


def test_a_run_directory_has_one_writer(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    """Two runs pointed at one directory used to interleave their metrics; the second is now refused."""
    holder = RunDirectory(tmp_path / "run")
    holder.open(make_config("run").to_dict(), start_round=0)
    with pytest.raises(RunDirectoryBusyError, match="is in use: another run holds its lock"):
        train(make_config("run"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.lock"]
    holder.close()
    assert train(make_config("run", rounds=1)).rounds_completed == 1


def test_a_users_file_is_never_overwritten(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    users = tmp_path / "mine" / "config.json"
    users.write_text('{"my": "settings"}\n')
    with pytest.raises(RunDirectoryError, match=r"mine/config\.json' was not written by this run"):
        train(make_config("mine", rounds=1))
    assert users.read_text() == '{"my": "settings"}\n'


def test_without_out_dir_nothing_is_written(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    result = train(make_config(None, rounds=1))
    assert result.checkpoint is None and result.rounds_completed == 1
    assert list(tmp_path.iterdir()) == []
