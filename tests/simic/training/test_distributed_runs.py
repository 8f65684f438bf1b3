"""Two-process data-parallel runs on CPU (gloo), launched with ``torch.distributed.run``.

Each run takes tens of seconds (two interpreters, a rendezvous, tiny hosts), hence the slow suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dist_worker import tiny_config

from esper.simic.training import CheckpointError, read_metrics, train

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("dist_worker.py")
RUN_FILES = {"checkpoint_last.pt", "config.json", "metrics.jsonl", "run.lock", "summary.json"}


def _torchrun(work: Path, rounds: int, resume: str = "-", num_envs: int = 2) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    args = [str(WORKER), str(work / "run"), str(rounds), resume, str(work), str(num_envs)]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
        cwd=work,
    )


def _metrics(work: Path) -> list[dict[str, Any]]:
    rows = read_metrics(work / "run" / "metrics.jsonl")
    for row in rows:
        del row["timings"]
    return rows


def _checksums(work: Path, rank: int) -> list[str]:
    return json.loads((work / f"rank{rank}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def two_round_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("dp-a")
    done = _torchrun(work, rounds=2)
    assert done.returncode == 0, done.stderr[-2000:]
    return work


def test_replicas_hold_identical_weights_after_every_update(two_round_run: Path) -> None:
    rank0, rank1 = _checksums(two_round_run, 0), _checksums(two_round_run, 1)
    assert len(rank0) == 2
    assert rank0 == rank1


def test_only_rank_0_writes_the_run_directory_with_every_replicas_episodes(two_round_run: Path) -> None:
    assert {p.name for p in (two_round_run / "run").iterdir()} == RUN_FILES
    rows = _metrics(two_round_run)
    assert [(row["round"], row["episodes"]) for row in rows] == [(1, 2), (2, 4)]
    assert all(row["env_steps"] == 2 * 6 for row in rows)  # both replicas' episodes of 6 steps


def test_the_same_seed_and_world_size_give_an_identical_run(two_round_run: Path, tmp_path: Path) -> None:
    done = _torchrun(tmp_path, rounds=2)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _metrics(tmp_path) == _metrics(two_round_run)
    assert _checksums(tmp_path, 0) == _checksums(two_round_run, 0)


def test_a_resumed_run_continues_bit_identically(two_round_run: Path, tmp_path: Path) -> None:
    first = _torchrun(tmp_path, rounds=1, resume="auto")  # an empty run directory: a fresh start
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = _torchrun(tmp_path, rounds=2, resume="auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _metrics(tmp_path) == _metrics(two_round_run)
    assert _checksums(tmp_path, 0) == _checksums(two_round_run, 0)[1:]


def test_another_world_size_cannot_resume_the_checkpoint(two_round_run: Path, tmp_path: Path) -> None:
    checkpoint = two_round_run / "run" / "checkpoint_last.pt"
    with pytest.raises(CheckpointError, match=r"written by 2 process\(es\) and this run has 1; resume it with"):
        train(tiny_config(str(tmp_path / "run"), rounds=3), resume=checkpoint)


def test_an_uneven_split_is_refused_in_one_line(tmp_path: Path) -> None:
    done = _torchrun(tmp_path, rounds=1, num_envs=3)
    assert done.returncode != 0
    assert "worker error: --num-envs 3 does not split evenly over 2 processes; use a multiple of 2" in done.stderr


def test_esper_train_starts_the_workers_through_torchrun(tmp_path: Path) -> None:
    flags = ["--num-envs", "2", "--rounds", "1", "--episode-length", "6", "--quiet"]
    flags += ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}', "--out", str(tmp_path / "run")]
    done = subprocess.run(
        [sys.executable, "-m", "esper.simic", "ppo", "--nproc-per-node", "2", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run directory:") == 1  # rank 0 alone reports
    assert {p.name for p in (tmp_path / "run").iterdir()} == RUN_FILES
    assert [row["episodes"] for row in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [2]


def test_a_failing_worker_ends_the_job_with_its_line_and_status(tmp_path: Path) -> None:
    flags = ["--nproc-per-node", "2", "--policy", "nosuch", "--num-envs", "2", "--rounds", "1", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "esper.simic", "ppo", *flags, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    line = "esper-train: error: unknown policy 'nosuch'. Known policies: example-gru, heuristic, lstm, mlp"
    # Both workers refuse the input; the launcher prints the first one's line, once, and nothing else.
    assert done.stderr == line + "\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ppo_job(work: Path, *, restarts: int) -> subprocess.Popen[str]:
    """The README's multi-machine ``torchrun`` line on one machine (2 processes, c10d rendezvous), with
    ``--max-restarts``: ``esper.simic ppo … --resume auto``, 3 rounds of ~1 s."""
    command = [str(Path(sys.executable).with_name("torchrun")), "--nnodes", "1", "--nproc-per-node", "2"]
    command += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}"]
    command += [f"--max-restarts={restarts}", "-m", "esper.simic", "ppo", "--num-envs", "2", "--rounds", "3"]
    command += ["--episode-length", "30", "--checkpoint-every", "1", "--seed", "7", "--quiet", "--resume", "auto"]
    command += ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}', "--out", str(work / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work)


def _worker_pid(launcher: int, rank: int) -> int:
    """The pid of ``rank`` among the launcher's child processes (read from their environments)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for child in children:
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    raise AssertionError(f"no worker of rank {rank} among {children}")


def _wait_for_lines(path: Path, count: int, job: subprocess.Popen[str], timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and len(path.read_text(encoding="utf-8").splitlines()) >= count):
        assert job.poll() is None, "the job ended before the worker could be killed"
        assert time.monotonic() < deadline, f"{path} never reached {count} line(s)"
        time.sleep(0.02)


def test_a_job_whose_worker_is_killed_restarts_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    (tmp_path / "reference").mkdir()
    reference = _ppo_job(tmp_path / "reference", restarts=0)
    _, stderr = reference.communicate(timeout=300)
    assert reference.returncode == 0, stderr[-2000:]

    (tmp_path / "killed").mkdir()
    job = _ppo_job(tmp_path / "killed", restarts=1)
    _wait_for_lines(tmp_path / "killed" / "run" / "metrics.jsonl", 1, job)  # round 1 is checkpointed
    time.sleep(0.3)  # into round 2
    os.kill(_worker_pid(job.pid, rank=1), signal.SIGKILL)
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr[-2000:]
    assert "failed (exitcode: -9) local_rank: 1" in stderr  # torchrun saw the kill, then restarted the group

    def metrics(run: Path) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != "timings"} for row in read_metrics(run / "metrics.jsonl")]

    assert [row["round"] for row in metrics(tmp_path / "killed" / "run")] == [1, 2, 3]
    assert metrics(tmp_path / "killed" / "run") == metrics(tmp_path / "reference" / "run")


def _launched_job(work: Path) -> subprocess.Popen[str]:
    """``esper-train ppo --nproc-per-node 2`` long enough to be stopped mid-run (200 rounds of ~1 s), in a
    session of its own (its process group is what a terminal's Ctrl-C reaches); stderr goes to
    ``work/stderr.txt``."""
    flags = ["--num-envs", "2", "--rounds", "200", "--episode-length", "30", "--seed", "7", "--quiet"]
    flags += ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}', "--out", str(work / "run")]
    command = [sys.executable, "-m", "esper.simic", "ppo", "--nproc-per-node", "2", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with (work / "stderr.txt").open("w") as stderr:
        return subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=env, cwd=work, start_new_session=True
        )


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_until_gone(pids: list[int], timeout_s: float) -> list[int]:
    """``pids`` still running after ``timeout_s`` (none if they all end in time)."""
    deadline = time.monotonic() + timeout_s
    while any(not _gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if not _gone(pid)]


def test_killing_the_launcher_ends_its_workers(tmp_path: Path) -> None:
    """``kill -9`` of ``esper-train ppo --nproc-per-node 2``: no worker trains on alone."""
    with _training_job(tmp_path) as (job, workers):
        assert len(workers) == 2  # torchrun's agent runs in the launcher: the workers are its children
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        assert _wait_until_gone(workers, timeout_s=10.0) == []


_WORKER = """
import sys, time
from esper.simic import launch
if sys.argv[1] == "watch":  # the fallback of systems without prctl
    launch._set_parent_death_signal = lambda sig: False
    launch.WATCH_PERIOD_S = 0.05
launch.die_with_launcher()
print("armed", flush=True)
time.sleep(60)
"""
_LAUNCHER = """
import os, subprocess, sys, time
env = {**os.environ, "ESPER_LAUNCHED_WORKER": "1", "ESPER_LAUNCHER_PID": str(os.getpid())}
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=env, stdout=subprocess.PIPE, text=True)
assert worker.stdout.readline() == "armed\\n"
print(worker.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["prctl", "watch"])
def test_a_worker_ends_when_its_launcher_is_killed(how: str) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, _WORKER, how], stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        worker = int(launcher.stdout.readline())  # type: ignore[union-attr]
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=30)
        assert _wait_until_gone([worker], timeout_s=10.0) == []
    finally:
        if worker is not None and not _gone(worker):
            os.kill(worker, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_a_worker_whose_launcher_is_already_gone_ends_at_once() -> None:
    env = {**os.environ, "ESPER_LAUNCHED_WORKER": "1", "ESPER_LAUNCHER_PID": "0"}  # never this process's parent
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, "prctl"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (-signal.SIGTERM, "")


@contextmanager
def _training_job(work: Path) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """A :func:`_launched_job` once both workers train (its first metrics line), with the workers'
    pids; whatever is left of it is killed on the way out (a test that failed half-way)."""
    job = _launched_job(work)
    workers: list[int] = []
    try:
        _wait_for_lines(work / "run" / "metrics.jsonl", 1, job)
        workers = _children(job.pid)
        yield job, workers
    finally:
        for pid in workers:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        if job.poll() is None:
            job.kill()
            job.wait()


def test_ctrl_c_stops_the_job_with_one_line_and_status_130(tmp_path: Path) -> None:
    """Like one process: ``esper-train: interrupted`` and 130, no traceback of the launcher or a worker."""
    with _training_job(tmp_path) as (job, workers):
        os.killpg(job.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert job.wait(timeout=120) == 130
        assert _wait_until_gone(workers, timeout_s=10.0) == []
    assert (tmp_path / "stderr.txt").read_text().strip().splitlines() == ["esper-train: interrupted"]


def test_a_killed_worker_is_reported_in_one_line_without_its_peers_traceback(tmp_path: Path) -> None:
    with _training_job(tmp_path) as (job, _):
        victim = _worker_pid(job.pid, rank=1)
        os.kill(victim, signal.SIGSTOP)  # its peer reaches the round's next collective and waits there for it
        time.sleep(5.0)
        os.kill(victim, signal.SIGKILL)  # the waiting peer's connection is reset
        assert job.wait(timeout=120) == 128 + signal.SIGKILL
    assert (tmp_path / "stderr.txt").read_text().splitlines() == ["esper-train: error: worker 1 was killed by SIGKILL"]
