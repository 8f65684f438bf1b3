"""Command-line flags of the tiny synthetic runs the CLI tests train, and the in-process CLI runner
(imported by tests, not collected)."""

from __future__ import annotations

import pytest

from esper.simic import cli

#: A shrunk policy: keeps a CLI test's update sub-second.
TINY_POLICY = ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}']


def tiny_task(episode_length: int = 4) -> list[str]:
    """A synthetic task small enough for a few-second ``esper-train`` run: ``episode_length`` epochs
    of 64 training and 32 validation samples in batches of 32."""
    flags = ["--task", "synthetic", "--episode-length", str(episode_length)]
    return [*flags, "--synthetic-train-size", "64", "--synthetic-val-size", "32", "--batch-size", "32"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``esper-train argv`` in this process: its exit code, stdout and stderr."""
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
