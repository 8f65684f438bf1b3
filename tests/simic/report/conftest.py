"""A tiny evaluated run directory, built once per test module through the CLI (``ppo`` then ``eval``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_flags import TINY_POLICY, tiny_task

from esper.simic import cli

#: A 2-round, 2-env, 6-step synthetic run with a shrunk policy: a few seconds to train and evaluate.
TINY_RUN = [*tiny_task(episode_length=6), *TINY_POLICY, "--num-envs", "2", "--rounds", "2"]
EVAL_EPISODES = 2


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory after ``esper-train ppo`` and ``esper-train eval`` (eval.json and traces.jsonl in it)."""
    out = tmp_path_factory.mktemp("report") / "run"
    assert cli.main(["ppo", *TINY_RUN, "--out", str(out), "--quiet"]) == 0
    eval_args = ["--episodes", str(EVAL_EPISODES), "--num-envs", "2", "--no-costly-baselines"]
    assert cli.main(["eval", str(out / "checkpoint_last.pt"), *eval_args]) == 0
    return out


@pytest.fixture
def trained_run(evaluated_run: Path, tmp_path: Path) -> Path:
    """A copy of the run directory as it was before ``eval`` (no eval.json, no traces.jsonl)."""
    copy = tmp_path / "trained"
    shutil.copytree(evaluated_run, copy, ignore=shutil.ignore_patterns("eval.json", "traces.jsonl", "plots", "*.html"))
    return copy
