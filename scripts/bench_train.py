"""Benchmark the default ``esper-train ppo`` configuration and print JSON.

Runs the same configuration the CLI uses by default (TrainConfig defaults, checkpoints written to
a temporary run directory), optionally shortened with ``--rounds`` or changed with ``--task``,
``--host`` and ``--num-envs``, once per host engine of ``--engines`` (side by side: ``loop`` and
``batched`` by default, alternating round for round is not possible, so the runs follow each other),
and reports for each:

* wall time per round, split into environment steps, policy calls, PPO update, checkpointing
  and the rest (mean over rounds, plus the first round separately since it includes warm-up);
* environment steps (RL transitions) per second over the whole run;
* peak resident memory of the process (``resource.getrusage``, MiB).

Usage::

    uv run python scripts/bench_train.py                 # the full default run
    uv run python scripts/bench_train.py --rounds 3      # quick look
    uv run python scripts/bench_train.py --rounds 3 --task digits --num-envs 16
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from dataclasses import replace
from statistics import mean
from typing import Any

import torch

from esper.simic.training import RecordingSink, RoundRecord, TrainConfig, train


def _phases(record: RoundRecord) -> dict[str, float]:
    t = record.timings
    return {
        "env_s": t.env_s,
        "policy_s": t.policy_s,
        "update_s": t.update_s,
        "checkpoint_s": t.checkpoint_s,
        "other_s": t.other_s,
        "total_s": t.total_s,
    }


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def run(config: TrainConfig) -> dict[str, Any]:
    """Train ``config`` in a temporary run directory; the figures of one engine."""
    sink = RecordingSink()
    with tempfile.TemporaryDirectory() as out_dir:
        started = time.perf_counter()
        train(replace(config, out_dir=out_dir), sink=sink)
        wall_s = time.perf_counter() - started
    per_round = [_phases(r) for r in sink.records]
    steady = per_round[1:] or per_round
    env_steps = sum(r.env_steps for r in sink.records)
    steady_steps = sum(r.env_steps for r in sink.records[1:]) or env_steps
    return {
        "wall_time_s": wall_s,
        "rounds": len(per_round),
        "env_steps": env_steps,
        "env_steps_per_s": env_steps / wall_s,
        "env_steps_per_s_after_first": steady_steps / sum(r["total_s"] for r in steady),
        "first_round_s": per_round[0],
        "mean_round_s_after_first": {k: mean(r[k] for r in steady) for k in steady[0]},
        "mean_discounted_return_by_round": [round(r.episode_stats.mean_discounted_return, 4) for r in sink.records],
        "mean_final_accuracy_by_round": [round(r.episode_stats.mean_final_accuracy, 2) for r in sink.records],
        "fossilized_by_round": [r.episode_stats.fossilized for r in sink.records],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    parser.add_argument("--threads", type=int, default=None, help="override num_threads (torch CPU threads)")
    parser.add_argument("--task", default=None, help="override the task (e.g. digits, the fixed-host task)")
    parser.add_argument("--host", default=None, help="override the host topology (mlp, cnn, transformer)")
    parser.add_argument("--num-envs", type=int, default=None, help="override the number of environments")
    parser.add_argument(
        "--engines", nargs="+", default=["loop", "batched"], choices=["loop", "batched"], help="host engines to run"
    )
    args = parser.parse_args()
    config = replace(TrainConfig(), rounds=args.rounds)
    if args.threads is not None:
        config = replace(config, num_threads=args.threads)
    if args.num_envs is not None:
        config = replace(config, num_envs=args.num_envs)
    env_fields = {k: v for k, v in (("task", args.task), ("host", args.host)) if v is not None}
    if env_fields:
        config = replace(config, env=replace(config.env, **env_fields))
    engines = {engine: run(replace(config, engine=engine)) for engine in args.engines}
    report: dict[str, object] = {
        "config": {
            "policy": config.policy,
            "task": config.env.task,
            "host": config.env.host,
            "num_envs": config.num_envs,
            "rounds": config.total_rounds,
            "episode_length": config.env.episode_length,
            "slots": list(config.env.slot_ids),
            "device": config.device,
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "num_threads": config.num_threads,
            "processor": platform.processor() or platform.machine(),
        },
        "engines": engines,
        "peak_rss_mib": _peak_rss_mib(),
    }
    if "loop" in engines and "batched" in engines:
        report["batched_speedup"] = engines["batched"]["env_steps_per_s"] / engines["loop"]["env_steps_per_s"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
