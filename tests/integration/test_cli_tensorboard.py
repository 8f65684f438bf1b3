"""esper-train --tensorboard (ppo, eval): event files in the run directory, or one line naming the extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import TINY, TINY_POLICY

from esper.simic import cli

MISSING = "esper-train: error: --tensorboard needs the optional extra: pip install 'esper-simic[tensorboard]'\n"


def test_ppo_then_eval_write_rounds_and_the_eval_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train_argv = ["ppo", "--rounds", "2", "--envs", "2", *TINY, *TINY_POLICY, "--out", str(run), "--quiet"]
    assert cli.main([*train_argv, "--tensorboard"]) == 0
    checkpoint = str(run / "checkpoint_last.pt")
    eval_argv = ["eval", checkpoint, "--episodes", "2", "--num-envs", "2", "--no-costly-baselines", "--tensorboard"]
    assert cli.main(eval_argv) == 0
    assert f"wrote TensorBoard events to {run / 'tensorboard'}" in capsys.readouterr().out
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("round/mean_objective")] == [1, 2]
    rows = json.loads((run / "eval.json").read_text())["rows"]
    assert len(rows) == 5
    for row in rows:
        for field in ("mean_objective", "mean_final_accuracy", "mean_params_added"):
            (event,) = events.Scalars(f"eval/{row['policy']}/{field}")
            assert (event.step, event.value) == (2, float(np.float32(row[field])))
    assert "eval/table/text_summary" in events.Tags()["tensors"]


@pytest.mark.parametrize("command", [["ppo", *TINY], ["eval", "no-such-checkpoint.pt"], ["study", "--seeds", "1"]])
def test_missing_extra_is_one_line_and_writes_nothing(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.chdir(tmp_path)
    assert cli.main([*command, "--tensorboard"]) == 2
    assert capsys.readouterr().err == MISSING
    assert list(tmp_path.iterdir()) == []
