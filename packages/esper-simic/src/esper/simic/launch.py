"""``esper-train ppo --nproc-per-node N``: start N local workers through torch's own launcher.

The parent runs torchrun's own launcher in-process, as ``torchrun --standalone --nproc-per-node N
-m esper.simic ppo <the same arguments>`` (minus ``--nproc-per-node``, plus the run directory it
claimed, so every worker writes to the same one). Rendezvous, worker restarts and teardown on a
failure are torchrun's; nothing here is a process pool. A failed worker has printed its own
``esper-train: error: ...`` line; the launcher's report of it (a traceback and a failure table)
is left out, and the job exits with the first failed worker's status.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

NPROC_FLAG = "--nproc-per-node"


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


def launch_workers(argv: Sequence[str], nproc: int) -> int:
    """Run the workers of :func:`worker_command` to the end; returns 0, or the first failed worker's status."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one intra-op thread per worker (torchrun would warn and set it)
    agent_log = logging.getLogger("torch.distributed.elastic")
    level = agent_log.level
    agent_log.setLevel(logging.CRITICAL)  # the workers report their own errors
    try:
        run(get_args_parser().parse_args(worker_command(argv, nproc)))
    except ChildFailedError as exc:
        return exc.get_first_failure()[1].exitcode or 1
    finally:
        agent_log.setLevel(level)
    return 0


def under_torchrun() -> bool:
    """Whether this process is a worker of a multi-process job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a process outside one: the one that prints the run's closing lines."""
    return int(os.environ.get("RANK", "0")) == 0
