"""Reading a run directory for ``plot`` / ``report``: what is required, what is optional, what is refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from esper.simic.report import RunFilesError, load_run
from esper.simic.report.run_files import column

ROUND = {"round": 1, "mean_final_accuracy": 40.0, "update": {"approx_kl": 0.01}}


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_only_the_metrics_are_required(tmp_path: Path) -> None:
    write_lines(tmp_path / "metrics.jsonl", json.dumps(ROUND), json.dumps({**ROUND, "round": 2}))
    run = load_run(tmp_path)
    assert [r["round"] for r in run.rounds] == [1, 2]
    assert (run.config, run.summary, run.evaluation, run.traces) == (None, None, None, {})
    assert run.name == tmp_path.name


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    write_lines(tmp_path / "metrics.jsonl", json.dumps(ROUND), '{"round": 2, "mean_fin')
    assert [r["round"] for r in load_run(tmp_path).rounds] == [1]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((), "holds no finished round yet"),
        (('{"round": 1', json.dumps(ROUND)), "line 1 is not an Esper round record"),
        (('{"step": 3}',), "line 1 is not an Esper round record"),
        (("[1, 2]",), "line 1 is not an Esper round record"),
    ],
    ids=["empty", "torn-line-inside", "other-record", "not-an-object"],
)
def test_metrics_that_are_not_a_runs_are_refused(tmp_path: Path, lines: tuple[str, ...], message: str) -> None:
    write_lines(tmp_path / "metrics.jsonl", *lines)
    with pytest.raises(RunFilesError, match=message):
        load_run(tmp_path)


@pytest.mark.parametrize(("text", "message"), [("{", "is not JSON"), ("[1]", "is not a JSON object")])
def test_an_optional_file_that_is_not_a_json_object_is_refused(tmp_path: Path, text: str, message: str) -> None:
    write_lines(tmp_path / "metrics.jsonl", json.dumps(ROUND))
    (tmp_path / "eval.json").write_text(text)
    with pytest.raises(RunFilesError, match=f"eval.json' {message}"):
        load_run(tmp_path)


def test_column_follows_a_path_and_leaves_gaps_as_nan() -> None:
    rounds = [ROUND, {"round": 2, "update": {"approx_kl": None}}, {"round": 3, "update": {"approx_kl": True}}, {}]
    values = column(rounds, "update", "approx_kl")
    assert values[0] == 0.01 and all(math.isnan(v) for v in values[1:])
    assert column(rounds, "round")[:3] == [1.0, 2.0, 3.0]
