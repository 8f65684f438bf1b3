"""``esper-train ppo --nproc-per-node N``: start N local workers through torch's own launcher.

The parent runs torchrun's own launcher in-process, as ``torchrun --standalone --nproc-per-node N
-m esper.simic ppo <the same arguments>`` (minus ``--nproc-per-node``, plus the run directory it
claimed, so every worker writes to the same one). Rendezvous, worker restarts and teardown on a
failure are torchrun's; nothing here is a process pool.

Errors: a worker started here does not print its ``esper-train: error: ...`` line; it writes the
line to the reply file torchrun gives every worker (``TORCHELASTIC_ERROR_FILE``), and the
launcher prints the first failed worker's line once, so N workers refusing the same bad input
give one line, not N. A worker killed by a signal, or one that died without a reply, is named
with its rank; a worker that only lost its peers (:data:`~esper.simic.training.distributed.PEER_LOST`)
is named only when no worker failed for a reason of its own. torchrun's own report (a traceback,
a failure table, its log lines) is left out, and the job exits with the reported worker's status
(128 + the signal for a killed one). Ctrl-C stops the workers (torchrun passes the signal on) and
ends the job like one process: ``interrupted``, status 130. Workers started by the user's own
``torchrun`` print their lines themselves.

Process tree: torchrun's agent runs inside the launcher, so the workers are the launcher's own
children, each in a session of its own (torchrun's choice). A worker ends when the launcher ends,
even by SIGKILL, which no handler of the launcher can forward (:func:`die_with_launcher`).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
from torch.distributed.run import get_args_parser, run

from esper.simic.training.distributed import PEER_LOST

NPROC_FLAG = "--nproc-per-node"
LAUNCHED_BY_ESPER = "ESPER_LAUNCHED_WORKER"
"""Set to ``1`` in the workers of :func:`launch_workers`: they hand their error line to the launcher."""
LAUNCHER_PID = "ESPER_LAUNCHER_PID"
"""The launcher's process id, in the environment of the workers of :func:`launch_workers`."""
_PR_SET_PDEATHSIG = 1
"""``prctl`` option of ``<linux/prctl.h>``: the signal this process gets when its parent ends."""
WATCH_PERIOD_S = 1.0
"""How often a worker checks that its launcher lives, where the kernel cannot tell it (not Linux)."""


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc-per-node N`` / ``--nproc-per-node=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == NPROC_FLAG:
            skip = True
        elif not arg.startswith(NPROC_FLAG + "="):
            out.append(arg)
    return out


def worker_command(argv: Sequence[str], nproc: int) -> list[str]:
    """torchrun's arguments that run ``esper-train <argv>`` in ``nproc`` local workers."""
    if nproc < 1:
        raise ValueError(f"--nproc-per-node must be >= 1, got {nproc}")
    return ["--standalone", f"{NPROC_FLAG}={nproc}", "-m", "esper.simic", *without_nproc(argv)]


def launch_workers(argv: Sequence[str], nproc: int, *, prog: str) -> int:
    """Run the workers of :func:`worker_command` to the end; returns 0, or the failed worker's status.

    On a failure, prints the one error line (``prog: error: ...``) of the worker that failed first
    for a reason of its own (:func:`root_failure`) to stderr. A signal to the launcher (SIGINT,
    SIGTERM, SIGHUP, SIGQUIT) reaches the workers through torchrun's agent, which waits for them
    to end; then SIGINT raises ``KeyboardInterrupt`` (the caller reports it as for one process),
    and any other prints ``prog: stopped by SIGTERM`` and returns 128 + the signal.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one intra-op thread per worker (torchrun would warn and set it)
    os.environ[LAUNCHED_BY_ESPER] = "1"  # torchrun passes this process's environment on to the workers
    os.environ[LAUNCHER_PID] = str(os.getpid())
    # The agent's loggers each set their own level, so a level here would not hold their warnings
    # back ("Received 2 death signal, shutting down workers"); their records stop here instead.
    agent_log, quiet = logging.getLogger("torch.distributed.elastic"), logging.NullHandler()
    propagate = agent_log.propagate
    agent_log.addHandler(quiet)
    agent_log.propagate = False
    try:
        run(get_args_parser().parse_args(worker_command(argv, nproc)))
    except ChildFailedError as exc:
        rank, failure = root_failure(exc)
        print(failure_line(rank, failure, prog), file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 128 + abs(failure.exitcode)
    except SignalException as exc:
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        print(f"{prog}: stopped by {exc.sigval.name}", file=sys.stderr)
        return 128 + int(exc.sigval)
    finally:
        agent_log.removeHandler(quiet)
        agent_log.propagate = propagate
        del os.environ[LAUNCHED_BY_ESPER], os.environ[LAUNCHER_PID]
    return 0


def die_with_launcher() -> None:
    """End this worker of :func:`launch_workers` (SIGTERM) when its launcher ends, however it ends.

    A launcher killed by SIGKILL cannot stop its workers, and they would train on to the end
    alone. On Linux the kernel sends the signal when the parent process ends
    (``prctl(PR_SET_PDEATHSIG)``; torchrun's agent starts the workers from the launcher's main
    thread, the one the kernel watches); elsewhere a daemon thread checks the parent every
    :data:`WATCH_PERIOD_S`. A launcher that ended before this call (while the worker imported torch)
    ends the worker at once. Outside a worker of :func:`launch_workers`, nothing happens.
    """
    launcher = os.environ.get(LAUNCHER_PID)
    if os.environ.get(LAUNCHED_BY_ESPER) != "1" or launcher is None:
        return
    parent = int(launcher)
    if not _set_parent_death_signal(signal.SIGTERM):
        threading.Thread(
            target=watch_parent, args=(parent, WATCH_PERIOD_S), name="esper-launcher-watch", daemon=True
        ).start()
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def watch_parent(parent: int, period_s: float) -> None:
    """Send this process SIGTERM once its parent is no longer ``parent`` (it ended: the process was re-parented)."""
    while os.getppid() == parent:
        time.sleep(period_s)
    os.kill(os.getpid(), signal.SIGTERM)


def _set_parent_death_signal(sig: signal.Signals) -> bool:
    """Ask Linux to send ``sig`` when the parent ends; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)


def root_failure(error: ChildFailedError) -> tuple[int, ProcessFailure]:
    """``(rank, failure)`` to report: the earliest failure of a worker that did not merely lose its peers.

    A killed worker makes its peers' next collective fail (their line holds :data:`PEER_LOST`)
    within the same second, torchrun's timestamp resolution; those lines are consequences. Only
    when every worker just lost the others is the earliest of them reported.
    """
    causes = {rank: f for rank, f in error.failures.items() if PEER_LOST not in str(f.error_file_data.get("message"))}
    if not causes:
        return error.get_first_failure()
    rank = min(causes, key=lambda r: causes[r].timestamp)
    return rank, causes[rank]


def failure_line(rank: int, failure: ProcessFailure, prog: str) -> str:
    """The one line that reports a failed worker: its own error line when it left one in its reply file."""
    message = failure.error_file_data.get("message")
    if isinstance(message, str) and message.startswith(f"{prog}: "):
        return message
    if failure.exitcode < 0:
        return f"{prog}: error: worker {rank} was killed by {signal.Signals(-failure.exitcode).name}"
    return f"{prog}: error: worker {rank} exited with status {failure.exitcode} (its output above says why)"


def report_error(line: str, *, lead: str = "") -> None:
    """Print ``lead + line`` to stderr; a worker of :func:`launch_workers` hands ``line`` to the launcher instead.

    ``lead``: printed before the line (``"\\n"`` ends a progress line that Ctrl-C cut short).

    The reply file is torchrun's own mechanism (``TORCHELASTIC_ERROR_FILE``): the launcher reads it
    from the failed worker's :class:`ProcessFailure` and prints the line once for the whole job.
    """
    reply_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if os.environ.get(LAUNCHED_BY_ESPER) != "1" or not reply_file:
        print(lead + line, file=sys.stderr)
        return
    with open(reply_file, "w", encoding="utf-8") as out:
        json.dump({"message": line, "timestamp": int(time.time())}, out)


def under_torchrun() -> bool:
    """Whether this process is a worker of a multi-process job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a process outside one: the one that prints the run's closing lines."""
    return int(os.environ.get("RANK", "0")) == 0
