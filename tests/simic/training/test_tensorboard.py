"""TensorBoard sink: the event files of a tiny run, read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from esper.simic.extras import MissingExtraError
from esper.simic.training import FanOutSink, RecordingSink, TrainConfig, read_metrics, train
from esper.simic.training.metrics import RunStart
from esper.simic.training.run_dir import strict_json
from esper.simic.training.tensorboard import BY_ENV_STEPS, TensorBoardSink, numeric_leaves, round_tags


def _events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_numeric_leaves_join_paths_and_skip_what_is_not_a_number() -> None:
    data = {"a": 1, "b": {"c": 2.5, "d": None, "e": "x", "f": True}, "g": [1, 2], "h": [{"x": 1}]}
    assert numeric_leaves(data, "p/") == ({"p/a": 1.0, "p/b/c": 2.5}, {"p/g": [1.0, 2.0]})


def test_round_tags_group_top_level_numbers_and_keep_block_paths() -> None:
    row = {"round": 3, "episodes": 6, "mean_objective": 1.5, "objectives": [1.0, 2.0], "update": {"approx_kl": 0.1}}
    scalars, series = round_tags(row)
    assert scalars == {"round/episodes": 6.0, "round/mean_objective": 1.5, "update/approx_kl": 0.1}
    assert series == {"round/objectives": [1.0, 2.0]}


def test_events_of_a_tiny_run_hold_every_number_of_metrics_jsonl(make_config: Callable[..., TrainConfig]) -> None:
    config = make_config(rounds=2)
    recording = RecordingSink()
    train(config, sink=FanOutSink(recording, TensorBoardSink()))
    run_dir = Path(config.out_dir or "")
    rows = read_metrics(run_dir / "metrics.jsonl")
    # The records as the sinks got them (NaN still NaN; metrics.jsonl writes it as null) are the lines.
    assert [json.loads(strict_json(r.to_json())) for r in recording.records] == rows
    expected: dict[str, list[tuple[int, int, float]]] = {}
    env_steps = 0
    for record in recording.records:
        env_steps += record.env_steps
        for tag, value in _scalars(record.to_json()).items():
            expected.setdefault(tag, []).append((record.round, env_steps, value))
    assert {"round/mean_discounted_return", "update/approx_kl", "timings/env_s", "op_counts/WAIT"} <= set(expected)
    by_round = _events(run_dir / "tensorboard")
    by_env_steps = _events(run_dir / "tensorboard" / BY_ENV_STEPS)
    assert set(by_round.Tags()["scalars"]) == set(expected)
    assert set(by_env_steps.Tags()["scalars"]) == {f"{BY_ENV_STEPS}/{tag}" for tag in expected}
    for tag, points in expected.items():
        events = by_round.Scalars(tag)
        assert [(e.step, _float32(e.value)) for e in events] == [(r, _float32(v)) for r, _, v in points], tag
        events = by_env_steps.Scalars(f"{BY_ENV_STEPS}/{tag}")
        assert [(e.step, _float32(e.value)) for e in events] == [(s, _float32(v)) for _, s, v in points], tag
    histogram = by_round.Histograms("round/final_accuracies")[-1]
    assert (histogram.step, histogram.histogram_value.num) == (2, 2)
    assert histogram.histogram_value.max == max(rows[-1]["final_accuracies"])
    assert by_round.Tags()["tensors"] == ["config/text_summary"]


def _float32(value: float) -> float | str:
    """The value as TensorBoard stores it (float32); NaN as a string so that it compares equal."""
    return "nan" if math.isnan(value) else float(np.float32(value))


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """Tag → number of a round record by the documented rule, written out by hand: top-level numbers
    under round/ (the round itself is the step), nested blocks by their '/'-joined path, None left out."""
    tags: dict[str, float] = {}

    def walk(value: Any, tag: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{tag}/{key}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            tags[tag] = value

    for key, value in row.items():
        if key != "round":
            walk(value, key if isinstance(value, dict) else f"round/{key}")
    return tags


def test_a_resumed_run_hides_the_rounds_a_crash_wrote_after_its_checkpoint(
    make_config: Callable[..., TrainConfig],
) -> None:
    config = make_config(rounds=3, checkpoint_every=2, keep_checkpoints=True)
    train(config, sink=TensorBoardSink())
    run_dir = Path(config.out_dir or "")
    # Round 3 was written after the round-2 checkpoint; continuing that checkpoint records round 3 again.
    train(config, resume=run_dir / "checkpoint_round_0002.pt", sink=TensorBoardSink())
    rows = read_metrics(run_dir / "metrics.jsonl")
    events = _events(run_dir / "tensorboard").Scalars("round/mean_objective")
    assert [e.step for e in events] == [1, 2, 3]
    assert _float32(events[-1].value) == _float32(rows[-1]["mean_objective"])
    env_steps = [
        e.step for e in _events(run_dir / "tensorboard" / BY_ENV_STEPS).Scalars(f"{BY_ENV_STEPS}/round/env_steps")
    ]
    assert env_steps == list(np.cumsum([row["env_steps"] for row in rows]))


def test_one_sink_writes_each_run_it_observes_into_that_runs_directory(
    make_config: Callable[..., TrainConfig],
) -> None:
    sink = TensorBoardSink()  # as study passes it to every seed's run
    for name in ("a", "b"):
        train(make_config(out=name, rounds=1), sink=sink)
    for name in ("a", "b"):
        run_dir = Path(make_config(out=name).out_dir or "")
        assert [e.step for e in _events(run_dir / "tensorboard").Scalars("round/episodes")] == [1]


def test_a_run_without_a_directory_needs_an_explicit_log_dir(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"^TensorBoard logging needs a run directory \(out_dir\) or an explicit log_dir$"
    ):
        TensorBoardSink().on_run_start(RunStart({"out_dir": None}, 0, 1, 1))


def test_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingExtraError) as caught:
        TensorBoardSink()
    assert str(caught.value) == "--tensorboard needs the optional extra: pip install 'esper-simic[tensorboard]'"
