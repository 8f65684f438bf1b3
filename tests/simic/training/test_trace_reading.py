"""``read_traces`` gives back what ``write_traces`` wrote, keeps old files readable and names a bad line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from esper.simic.env import SlotTrace
from esper.simic.training.traces import EpisodeTrace, StepTrace, read_traces, write_traces


def step(index: int, stage: str, *, val_accuracy: float = 50.0) -> StepTrace:
    return StepTrace(
        step=index,
        epoch=index + 1,
        op="GERMINATE" if index == 0 else "WAIT",
        action_valid=True,
        heads={"slot": 1, "blueprint": 2} if index == 0 else {},
        slots=(SlotTrace("r0c0", "DORMANT", None, 0.0, None, 0), SlotTrace("r0c1", stage, "NORM", 0.25, 1.5, 40)),
        val_accuracy=val_accuracy,
        val_loss=1.25,
        host_params=1292,
        seed_params=40,
        extra_compute=0.5,
        reward=-0.25,
        reward_components={"accuracy": -0.2, "param_cost": -0.05},
    )


def test_read_traces_returns_what_write_traces_wrote(tmp_path: Path) -> None:
    learned = (
        EpisodeTrace(0, 11, (step(0, "GERMINATED"), step(1, "TRAINING"))),
        EpisodeTrace(1, 12, (step(0, "GERMINATED"),)),
    )
    heuristic = (EpisodeTrace(0, 11, (step(0, "TRAINING"),)), EpisodeTrace(1, 12, (step(0, "BLENDING"),)))
    path = write_traces(tmp_path / "traces.jsonl", [("learned", learned), ("heuristic", heuristic)])
    traces = read_traces(path)
    assert list(traces) == ["learned", "heuristic"]
    assert traces == {"learned": learned, "heuristic": heuristic}


def test_null_floats_read_as_nan_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    path = write_traces(
        tmp_path / "traces.jsonl", [("p", [EpisodeTrace(0, 3, (step(0, "TRAINING", val_accuracy=math.nan),))])]
    )
    line = json.loads(path.read_text())
    assert line["val_accuracy"] is None
    line["added_later"] = {"x": 1}
    line["slots"][0]["added_later"] = 2
    path.write_text(json.dumps(line) + "\n")
    (trace,) = read_traces(path)["p"]
    assert math.isnan(trace.steps[0].val_accuracy) and trace.steps[0].slots == step(0, "TRAINING").slots


def test_a_line_that_is_not_a_step_is_named(tmp_path: Path) -> None:
    path = write_traces(tmp_path / "traces.jsonl", [("p", [EpisodeTrace(0, 3, (step(0, "TRAINING"),))])])
    path.write_text(path.read_text() + '{"policy": "p", "episode": 0}\n')
    with pytest.raises(ValueError, match=r"traces.jsonl' line 2 is not a step trace \(KeyError"):
        read_traces(path)
