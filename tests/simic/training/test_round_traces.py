"""``trace_every``: one greedy episode traced every K rounds, written beside the run, training unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esper.simic import cli
from esper.simic.training import TrainConfig, read_metrics, train
from esper.simic.training.round_traces import TRACES_DIR


def _traces(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    folder = run_dir / TRACES_DIR
    if not folder.exists():
        return {}
    return {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in sorted(folder.iterdir())}


def _without_timings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in row.items() if key != "timings"} for row in rows]


def test_one_traced_episode_every_k_rounds_and_training_unchanged(make_config: Callable[..., TrainConfig]) -> None:
    traced = make_config(out="traced", rounds=4, trace_every=2)
    plain = make_config(out="plain", rounds=4)
    train(traced)
    train(plain)
    traces = _traces(Path(traced.out_dir or ""))
    assert list(traces) == ["round_0002.jsonl", "round_0004.jsonl"]
    for round_index, lines in zip((2, 4), traces.values(), strict=True):
        assert [line["step"] for line in lines] == [0, 1, 2, 3]  # one whole episode of the 4-step env
        assert list(lines[0])[:5] == ["round", "policy", "episode", "seed", "step"]  # eval's lines, round first
        assert {(line["round"], line["policy"], line["episode"]) for line in lines} == {
            (round_index, "lstm (greedy)", 0)
        }
    assert traces["round_0002.jsonl"][0]["seed"] == traces["round_0004.jsonl"][0]["seed"]  # the same held-out episode
    assert _traces(Path(plain.out_dir or "")) == {}
    metrics = [_without_timings(read_metrics(Path(c.out_dir or "") / "metrics.jsonl")) for c in (traced, plain)]
    assert metrics[0] == metrics[1]


def test_resume_drops_traces_past_its_checkpoint_and_may_change_trace_every(
    make_config: Callable[..., TrainConfig],
) -> None:
    config = make_config(rounds=3, checkpoint_every=2, keep_checkpoints=True, trace_every=1)
    train(config)
    run_dir = Path(config.out_dir or "")
    first = _traces(run_dir)
    assert list(first) == ["round_0001.jsonl", "round_0002.jsonl", "round_0003.jsonl"]
    train(make_config(rounds=3, trace_every=0), resume=run_dir / "checkpoint_round_0002.pt")
    assert _traces(run_dir) == {name: first[name] for name in ("round_0001.jsonl", "round_0002.jsonl")}


def test_negative_trace_every_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"^trace_every must be >= 0 \(0 = no traces\), got -1$"):
        TrainConfig(trace_every=-1)
    assert cli.main(["ppo", "--trace-every", "-1"]) == 2
    assert capsys.readouterr().err == "esper-train: error: trace_every must be >= 0 (0 = no traces), got -1\n"
