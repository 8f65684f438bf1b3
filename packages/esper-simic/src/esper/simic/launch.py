"""``esper-train ppo --nproc-per-node N``: start N local workers through torch's own launcher.

The parent re-executes ``python -m torch.distributed.run --standalone --nproc-per-node N -m
esper.simic ppo <the same arguments>`` (minus ``--nproc-per-node``, plus the run directory it
claimed, so every worker writes to the same one) and returns the launcher's exit status. Worker
restarts, rendezvous and teardown on a failure are torchrun's; nothing here is a process pool.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

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
    """The torchrun command line that runs ``esper-train <argv>`` in ``nproc`` local workers."""
    if nproc < 1:
        raise ValueError(f"--nproc-per-node must be >= 1, got {nproc}")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"{NPROC_FLAG}={nproc}"]
    return [*launcher, "-m", "esper.simic", *without_nproc(argv)]


def launch_workers(argv: Sequence[str], nproc: int) -> int:
    """Run :func:`worker_command` and return its exit status (non-zero if any worker failed)."""
    # One intra-op thread per worker unless the user chose otherwise (torchrun would warn and set it).
    env = {"OMP_NUM_THREADS": "1", **os.environ}
    return subprocess.run(worker_command(argv, nproc), env=env, check=False).returncode


def under_torchrun() -> bool:
    """Whether this process is a worker of a multi-process job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a process outside one: the one that prints the run's closing lines."""
    return int(os.environ.get("RANK", "0")) == 0
