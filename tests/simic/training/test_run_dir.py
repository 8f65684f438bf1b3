"""The run directory's ownership: one exclusive writer, no foreign file overwritten, clean restarts."""

from __future__ import annotations

import errno
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esper.simic.training.metrics import EpisodeStats, PhaseTimings, RoundRecord, RunStart, RunSummary
from esper.simic.training.run_dir import (
    RunDirectory,
    RunDirectoryBusyError,
    RunDirectoryError,
    claim_new_run_directory,
    read_metrics,
    resolve_resume,
)

CONFIG: dict[str, Any] = {"policy": "lstm", "seed": 1, "rounds": 3, "env": {"host_lr": 0.02}}


def _record(round_index: int) -> RoundRecord:
    stats = EpisodeStats((1.0,), (79.0,), (80.0,), {}, 0, 0, 0, 0, 0, 0.0)
    timings = PhaseTimings(env_s=0.0, policy_s=0.0, update_s=0.0, checkpoint_s=0.0, total_s=1.0)
    return RoundRecord(round_index, round_index, 4, stats, 0, {}, {}, {}, timings)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[RunDirectory]:
    """An opened run directory that has recorded rounds 1 and 2 (no checkpoint), closed again."""
    directory = RunDirectory(tmp_path / "run")
    directory.open(CONFIG, start_round=0)
    directory.on_run_start(RunStart(CONFIG, 0, 3, 1))
    for r in (1, 2):
        directory.on_round(_record(r))
    directory.close()
    yield directory
    directory.close()


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


def test_a_second_writer_is_refused_while_the_first_holds_the_directory(run: RunDirectory) -> None:
    run.open(CONFIG, start_round=2)
    before = _snapshot(run.path)
    other = RunDirectory(run.path)
    with pytest.raises(RunDirectoryBusyError) as info:
        other.open(CONFIG, start_round=2)
    message = str(info.value)
    assert message == (
        f"run directory {str(run.path)!r} is in use: another run holds its lock (run.lock); "
        "wait for it to end or choose another output directory"
    )
    assert _snapshot(run.path) == before
    run.close()
    assert other.open(CONFIG, start_round=2) == []  # free again once the first run ends
    other.close()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"config.json": '{"learning_rate": 0.1}\n'}, r"config\.json' was not written by this run \(not an Esper run"),
        ({"config.json": "not json"}, r"config\.json' was not written by this run \(not an Esper run config of this"),
        ({"metrics.jsonl": "{}\n"}, r"metrics\.jsonl' was not written by this run \(no config\.json"),
        ({"checkpoint_last.pt": "x"}, r"checkpoint_last\.pt' was not written by this run"),
    ],
)
def test_files_the_run_did_not_write_are_refused_by_name_and_kept(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = _snapshot(tmp_path)
    with pytest.raises(RunDirectoryError, match=message) as info:
        RunDirectory(tmp_path).open(CONFIG, start_round=0)
    assert "\n" not in str(info.value)
    after = _snapshot(tmp_path)
    del after["run.lock"]
    assert after == before


def test_another_runs_config_names_only_the_differing_fields(run: RunDirectory) -> None:
    other = {**CONFIG, "seed": 2, "rounds": 9, "env": {"host_lr": 0.05}}
    with pytest.raises(RunDirectoryError) as info:
        run.open(other, start_round=0)
    assert str(info.value) == (
        f"{str(run.path / 'config.json')!r} belongs to another run (env.host_lr: config.json 0.02 vs now 0.05; "
        "seed: config.json 1 vs now 2); choose another output directory"
    )


def test_other_files_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("my notes")
    (tmp_path / ".notes.tmp").write_text("an editor's file")
    run = RunDirectory(tmp_path)
    assert run.open(CONFIG, start_round=0) == []
    run.on_run_start(RunStart(CONFIG, 0, 3, 1))
    run.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", "config.json", "notes.md", "run.lock"]


def test_a_fresh_start_after_a_crash_before_any_checkpoint_starts_again(run: RunDirectory) -> None:
    notices = run.open(CONFIG, start_round=0)
    assert notices == [
        f"no checkpoint in {str(run.path)!r}: starting the run again from round 0, dropping 2 metrics line(s) "
        "of the interrupted attempt"
    ]
    assert run.metrics_path.read_text() == ""


def test_a_fresh_start_over_this_runs_checkpoint_points_at_one_that_exists(run: RunDirectory) -> None:
    (run.path / "checkpoint_round_0002.pt").write_bytes(b"ckpt")
    (run.path / "checkpoint_round_0010.pt").write_bytes(b"ckpt")
    newest = run.path / "checkpoint_round_0010.pt"
    assert run.latest_checkpoint() == newest
    with pytest.raises(RunDirectoryError, match=r"already holds this run up to checkpoint_round_0010\.pt") as info:
        run.open(CONFIG, start_round=0)
    assert f"--resume {shlex.quote(str(newest))} (or --resume auto)" in str(info.value)
    (run.path / "checkpoint_last.pt").write_bytes(b"ckpt")
    assert run.latest_checkpoint() == run.path / "checkpoint_last.pt"
    assert resolve_resume("auto", run.path) == run.path / "checkpoint_last.pt"


def test_resume_auto_resolves_to_nothing_without_a_checkpoint(tmp_path: Path, run: RunDirectory) -> None:
    assert resolve_resume("auto", run.path) is None
    assert resolve_resume("auto", tmp_path / "missing") is None
    assert resolve_resume("some/ckpt.pt", None) == Path("some/ckpt.pt")
    assert resolve_resume(None, run.path) is None
    with pytest.raises(RunDirectoryError, match="resume 'auto' needs the run directory"):
        resolve_resume("auto", None)


def test_stale_temporaries_of_killed_writes_are_removed_on_the_next_start(run: RunDirectory) -> None:
    stale = [".checkpoint_last.pt.k3_x9a1b.tmp", ".config.json.tmp", ".metrics.jsonl.0123abcd.tmp"]
    for name in stale:
        (run.path / name).write_bytes(b"partial")
    (run.path / ".notes.tmp").write_text("not the run's")
    (run.path / "checkpoint_last.pt").write_bytes(b"ckpt")
    notices = run.open(CONFIG, start_round=2)
    assert notices == [f"removed 3 stale temporary file(s) left by an interrupted write: {sorted(stale)}"]
    assert sorted(p.name for p in run.path.iterdir()) == [
        ".notes.tmp",
        "checkpoint_last.pt",
        "config.json",
        "metrics.jsonl",
        "run.lock",
    ]


def test_temporary_looking_files_of_a_directory_that_never_held_a_run_are_kept(tmp_path: Path) -> None:
    names = [".checkpoint_last.pt.0123abcd.tmp", ".config.json.tmp", ".foo.123.tmp", ".metrics.jsonl.0123abcd.tmp"]
    for name in names:
        (tmp_path / name).write_text("the user's")
    run = RunDirectory(tmp_path)
    assert run.open(CONFIG, start_round=0) == []
    run.on_run_start(RunStart(CONFIG, 0, 3, 1))
    run.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [*names, "config.json", "run.lock"]
    assert all((tmp_path / name).read_text() == "the user's" for name in names)


def test_a_resume_that_drops_nothing_leaves_the_metrics_untouched(run: RunDirectory) -> None:
    before = _snapshot(run.path)
    assert run.open(CONFIG, start_round=2) == []
    assert _snapshot(run.path) == before


def test_writing_requires_the_lock(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match="is not open for writing"):
        RunDirectory(tmp_path).on_round(_record(1))


def _full_disk_after_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up in the middle of the next write: half of it lands, then ENOSPC."""
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)


def test_a_full_disk_names_the_file_and_leaves_no_half_written_file(
    run: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    run.open(CONFIG, start_round=2)
    before = {name: content for name, (content, _) in _snapshot(run.path).items()}
    _full_disk_after_half(monkeypatch)
    with pytest.raises(RunDirectoryError) as info:
        run.on_round(_record(3))
    assert str(info.value) == f"cannot write {str(run.metrics_path)!r}: No space left on device"
    with pytest.raises(RunDirectoryError, match=r"cannot write '.*summary\.json': No space left on device"):
        run.on_run_end(_summary_of(run))
    with pytest.raises(RunDirectoryError, match=r"cannot write '.*config\.json': No space left on device"):
        run.on_run_start(RunStart({**CONFIG, "rounds": 4}, 2, 4, 1))
    monkeypatch.undo()
    assert {name: content for name, (content, _) in _snapshot(run.path).items()} == before  # no temporaries either
    assert [r["round"] for r in read_metrics(run.metrics_path)] == [1, 2]


def _summary_of(run: RunDirectory) -> RunSummary:
    return RunSummary.from_rounds(
        run.round_rows(2), rounds_completed=2, episodes_completed=2, wall_time_s=1.0, checkpoint=None
    )


def test_the_default_name_gets_a_suffix_instead_of_sharing_a_directory(tmp_path: Path) -> None:
    names = [claim_new_run_directory(tmp_path / "runs", "ppo-20260101-120000").name for _ in range(3)]
    assert names == ["ppo-20260101-120000", "ppo-20260101-120000-2", "ppo-20260101-120000-3"]
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirectoryError, match="cannot create a run directory in"):
        claim_new_run_directory(tmp_path / "file", "x")


def test_summary_rows_cover_the_recorded_rounds(run: RunDirectory) -> None:
    assert [row["round"] for row in run.round_rows(1)] == [1]
    assert json.loads((run.path / "config.json").read_text()) == CONFIG


def test_a_resume_into_another_directory_copies_the_rounds_recorded_beside_the_checkpoint(
    tmp_path: Path, run: RunDirectory
) -> None:
    checkpoint = run.path / "checkpoint_last.pt"
    source = _snapshot(run.path)
    other = RunDirectory(tmp_path / "other")
    other.open(CONFIG, start_round=1)
    assert other.adopt_history(checkpoint, CONFIG, start_round=1) == [
        f"copied the metrics of round 1 from {str(run.metrics_path)!r}: this run directory holds the whole run"
    ]
    assert other.metrics_path.read_text() == run.metrics_path.read_text().splitlines(keepends=True)[0]
    assert json.loads((other.path / "config.json").read_text()) == CONFIG
    assert other.adopt_history(checkpoint, CONFIG, start_round=1) == []  # it records the run already
    other.close()
    assert _snapshot(run.path) == source


@pytest.mark.parametrize(
    ("start_round", "config", "metrics", "reason"),
    [
        (2, {**CONFIG, "seed": 2}, None, "'{run}/config.json' belongs to another run"),
        (3, CONFIG, None, "'{run}/metrics.jsonl' lacks some of them"),
        (2, CONFIG, "not json\n{}\n", "'{run}/metrics.jsonl' is corrupt"),
        (2, CONFIG, "", "'{run}/metrics.jsonl' lacks some of them"),
    ],
)
def test_rounds_that_cannot_be_copied_are_named_and_nothing_is_written(
    tmp_path: Path, run: RunDirectory, start_round: int, config: dict[str, Any], metrics: str | None, reason: str
) -> None:
    if metrics is not None:
        run.metrics_path.write_text(metrics)
    other = RunDirectory(tmp_path / "other")
    other.open(config, start_round=start_round)
    rounds = f"rounds 1-{start_round}"
    checkpoint = run.path / "checkpoint_last.pt"
    assert other.adopt_history(checkpoint, config, start_round=start_round) == [
        f"no metrics of {rounds} beside {str(checkpoint)!r} ({reason.format(run=run.path)}): "
        f"{str(other.path)!r} records rounds {start_round + 1} on, and its summary covers only them"
    ]
    other.close()
    assert sorted(p.name for p in other.path.iterdir()) == ["run.lock"]
