"""A worker of the 2-process tests (started by ``torch.distributed.run``; not collected by pytest).

``python -m torch.distributed.run --standalone --nproc-per-node 2 dist_worker.py OUT ROUNDS RESUME
CHECKSUMS [NUM_ENVS]`` trains the tiny golden-like config into ``OUT`` for ``ROUNDS`` rounds (``RESUME``:
a checkpoint path, ``auto`` or ``-``) and writes the policy's parameter checksum after every
update to ``CHECKSUMS/rank<R>.json`` (outside the run directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from esper.simic.agent import PPOAgent, PPOConfig
from esper.simic.env import EnvConfig, LifecycleSettings
from esper.simic.training import TrainConfig, train


def tiny_config(out_dir: str, rounds: int, num_envs: int = 2) -> TrainConfig:
    return TrainConfig(
        policy="lstm",
        policy_kwargs={"hidden_size": 16, "lstm_hidden": 16},
        num_envs=num_envs,
        rounds=rounds,
        seed=5,
        checkpoint_every=1,
        out_dir=out_dir,
        dist_timeout_s=120.0,
        env=EnvConfig(
            episode_length=6, lifecycle=LifecycleSettings(training_dwell=2, min_prune_age=2, embargo_epochs=1)
        ),
        ppo=PPOConfig(update_epochs=2),
    )


def main() -> None:
    out, rounds, resume, checksum_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    num_envs = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    checksums: list[str] = []
    original = PPOAgent.update

    def update(self: PPOAgent, buffer):  # type: ignore[no-untyped-def]
        metrics = original(self, buffer)
        digest = hashlib.sha256()
        for param in self.policy.parameters():
            digest.update(param.detach().to(torch.float64).numpy().tobytes())
        checksums.append(digest.hexdigest())
        return metrics

    PPOAgent.update = update  # type: ignore[method-assign]
    try:
        train(tiny_config(out, rounds, num_envs), resume=None if resume == "-" else resume)
    except ValueError as exc:
        print(f"worker error: {exc}", file=sys.stderr)
        sys.exit(2)
    rank = os.environ["RANK"]
    (checksum_dir / f"rank{rank}.json").write_text(json.dumps(checksums), encoding="utf-8")


if __name__ == "__main__":
    main()
