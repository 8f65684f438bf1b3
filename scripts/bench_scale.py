"""Data-parallel scaling of the default ``esper-train ppo`` configuration; prints JSON.

Trains the default configuration (``TrainConfig()``: 4 environments) for ``--rounds`` rounds with
1 and with ``--nproc`` processes (``torch.distributed.run``, gloo on CPU) in one invocation and
reports, for each, environment steps per second over the rounds (rank 0's round times, start-up
excluded) and where the time goes, summed over the rounds and taken on rank 0:

* ``env_s`` / ``policy_s``: rank 0's own environment steps and policy calls;
* ``wait_s``: the first collective after the rollout (merging the reward normaliser's statistics),
  i.e. rank 0 waiting for the slowest rank to finish its episodes;
* ``all_reduce_s``: every other collective (gradients, advantages, normalisers, KL, the report);
* ``update_s``: the PPO update including its collectives.

Plus ``speedup`` = steps/s with N processes ÷ steps/s with one, and ``speedup_if_balanced``, the
same with rank 0's wait for the slowest rank taken out: how far the processes would scale if every
rank's episodes cost the same (they do not: a rank whose envs grew more seeds trains more). Usage::

    uv run python scripts/bench_scale.py --rounds 3
    uv run python scripts/bench_scale.py --device cuda    # one GPU per process
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from esper.simic.agent import RewardNormalizer
from esper.simic.training import RecordingSink, TrainConfig, train
from esper.simic.training.distributed import ProcessGroupCollectives


class _Clock:
    """Seconds spent in the wrapped calls."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, owner: type, name: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        setattr(owner, name, timed)


def _worker(out: Path, rounds: int, device: str) -> None:
    """One process of a measured run: train, then rank 0 writes its figures to ``out``."""
    wait, reduce = _Clock(), _Clock()
    wait.wrap(RewardNormalizer, "end_round")
    reduce.wrap(ProcessGroupCollectives, "gather")
    reduce.wrap(ProcessGroupCollectives, "average_")
    sink = RecordingSink()
    train(replace(TrainConfig(), rounds=rounds, device=device, out_dir=str(out / "run")), sink=sink)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    records = sink.records
    total = sum(r.timings.total_s for r in records)
    figures = {
        "env_steps": sum(r.env_steps for r in records),
        "round_s": total,
        "env_steps_per_s": sum(r.env_steps for r in records) / total,
        "env_s": sum(r.timings.env_s for r in records),
        "policy_s": sum(r.timings.policy_s for r in records),
        "update_s": sum(r.timings.update_s for r in records),
        "wait_s": wait.seconds if reduce.seconds else 0.0,  # one process: nothing to wait for
        "all_reduce_s": max(reduce.seconds - wait.seconds, 0.0),
    }
    (out / "figures.json").write_text(json.dumps(figures), encoding="utf-8")


def _measure(nproc: int, rounds: int, device: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        worker = [__file__, "--worker", str(out), "--rounds", str(rounds), "--device", device]
        launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launcher += [] if nproc == 1 else [f"--nproc-per-node={nproc}"]
        started = time.perf_counter()
        subprocess.run([*launcher, *worker], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        figures = json.loads((out / "figures.json").read_text(encoding="utf-8"))
        return {"processes": nproc, "wall_s_with_startup": time.perf_counter() - started, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measured run")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the parallel run")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args.worker, args.rounds, args.device)
        return
    single = _measure(1, args.rounds, args.device)
    parallel = _measure(args.nproc, args.rounds, args.device)
    report = {
        "config": {"num_envs": TrainConfig().num_envs, "rounds": args.rounds, "device": args.device},
        "cpu_count": os.cpu_count(),
        "runs": [single, parallel],
        "speedup": parallel["env_steps_per_s"] / single["env_steps_per_s"],
        "speedup_if_balanced": single["round_s"] / (parallel["round_s"] - parallel["wait_s"]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
