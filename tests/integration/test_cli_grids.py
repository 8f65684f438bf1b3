"""``esper-train`` on a 10-slot, 2-row grid: a tiny run and its evaluation, and checkpoints of another grid refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_flags import TINY_POLICY, run_cli, tiny_task

from esper.simic import cli
from esper.simic.training import read_checkpoint, write_checkpoint

#: 2 rows x 5 columns (the reference's 10-slot configuration); slot-head order row by row.
GRID = [f"r{row}c{col}" for row in range(2) for col in range(5)]
TINY = [*tiny_task(episode_length=3), *TINY_POLICY]


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-round PPO run on the 10-slot grid (shared: training is the slow part)."""
    run = tmp_path_factory.mktemp("grid") / "run"
    code = cli.main(["ppo", "--rounds", "1", "--num-envs", "2", *TINY, "--slots", *GRID, "--out", str(run), "--quiet"])
    assert code == 0
    return run


def test_a_10_slot_grid_trains_and_evaluates(grid_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = read_checkpoint(grid_run / "checkpoint_last.pt")
    assert checkpoint["config"]["env"]["slot_ids"] == GRID and checkpoint["policy"]["slot_ids"] == GRID
    rows = [json.loads(line) for line in (grid_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["episodes"] == 2
    argv = ["eval", str(grid_run / "checkpoint_last.pt"), "--episodes", "2", "--num-envs", "2", "--no-costly-baselines"]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr
    assert stdout.splitlines()[1].startswith("checkpoint (lstm)")
    assert len(json.loads((grid_run / "eval.json").read_text())["rows"]) == 5


def test_resuming_with_another_grid_is_one_line(grid_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ppo", "--resume", str(grid_run / "checkpoint_last.pt"), "--rounds", "2", "--slots", "r0c0", "r0c1", "r0c2"]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("esper-train: error: cannot resume")
    assert f"env.slot_ids: checkpoint {GRID!r} vs now ['r0c0', 'r0c1', 'r0c2']" in stderr


def test_evaluating_a_policy_of_another_grid_is_one_line(
    grid_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = read_checkpoint(grid_run / "checkpoint_last.pt")
    data["config"]["env"]["slot_ids"] = GRID[:5]  # the environment of a one-row grid, the 10-slot policy
    other = tmp_path / "other_grid.pt"
    write_checkpoint(other, data)
    code, stdout, stderr = run_cli(["eval", str(other), "--episodes", "1", "--no-costly-baselines"], capsys)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and f"checkpoint slot ids {GRID} do not match the environment's {GRID[:5]}" in stderr
