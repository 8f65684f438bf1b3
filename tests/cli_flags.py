"""Command-line flags of the tiny synthetic runs the CLI tests train (imported by tests, not collected)."""

from __future__ import annotations

#: A shrunk policy: keeps a CLI test's update sub-second.
TINY_POLICY = ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}']


def tiny_task(episode_length: int = 4) -> list[str]:
    """A synthetic task small enough for a few-second ``esper-train`` run: ``episode_length`` epochs
    of 64 training and 32 validation samples in batches of 32."""
    flags = ["--task", "synthetic", "--episode-length", str(episode_length)]
    return [*flags, "--synthetic-train-size", "64", "--synthetic-val-size", "32", "--batch-size", "32"]
