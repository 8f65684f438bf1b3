"""Round records, the run directory sink and the console progress display."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from episode_summaries import make_summary

from esper.simic.env import EpisodeSummary
from esper.simic.training.metrics import (
    EpisodeStats,
    FanOutSink,
    PhaseTimings,
    RecordingSink,
    RoundRecord,
    RunStart,
    RunSummary,
)
from esper.simic.training.progress import ConsoleProgress
from esper.simic.training.run_dir import RunDirectory, RunDirectoryError, read_metrics, strict_json


def _record(round_index: int) -> RoundRecord:
    stats = EpisodeStats(
        discounted_returns=(1.0, 3.0),
        objectives=(79.5, 88.5),
        final_accuracies=(80.0, 90.0),
        reward_components={"accuracy": (1.5, 3.5), "param_cost": (-0.5, -0.5)},
        germinated=2,
        fossilized=1,
        pruned=0,
        rollbacks=0,
        params_added=100,
        extra_compute=2.5,
    )
    return RoundRecord(
        round=round_index,
        episodes=2 * round_index,
        env_steps=16,
        episode_stats=stats,
        invalid_actions=1,
        op_counts={"WAIT": 14, "GERMINATE": 2},
        head_entropies={"op": 0.5, "slot": None},
        update={"approx_kl": 0.01, "policy_loss": -0.1},
        timings=PhaseTimings(env_s=1.0, policy_s=0.25, update_s=0.5, checkpoint_s=0.0, total_s=2.0),
    )


def _start(total: int = 3, start: int = 0) -> RunStart:
    return RunStart({"policy": "lstm"}, start, total, 2)


#: What a run directory is opened for (any resolved config; its run owns the directory).
CONFIG = {"policy": "lstm", "seed": 1}


def _summary() -> RunSummary:
    return RunSummary.from_rounds(
        [_record(r).to_json() for r in (1, 2, 3)],
        rounds_completed=3,
        episodes_completed=6,
        wall_time_s=12.0,
        checkpoint="ckpt.pt",
    )


def test_episode_stats_exact_values() -> None:
    stats = _record(1).episode_stats
    assert (stats.mean_discounted_return, stats.mean_objective) == (2.0, 84.0)
    assert stats.mean_final_accuracy == 85.0
    assert stats.std_final_accuracy == 5.0
    assert stats.mean_reward_components == {"accuracy": 2.5, "param_cost": -0.5}
    with pytest.raises(ValueError, match="one discounted return"):
        EpisodeStats((), (), (), {}, 0, 0, 0, 0, 0, 0.0)
    with pytest.raises(ValueError, match="one discounted return"):
        dataclasses.replace(stats, objectives=(1.0,))
    with pytest.raises(ValueError, match="one discounted return"):
        dataclasses.replace(stats, reward_components={"accuracy": (1.0,)})


def test_episode_stats_from_episode_summaries() -> None:
    def episode(ret: float, acc: float, germinated: int, fossilized: int, seed_params: int) -> EpisodeSummary:
        return make_summary(
            discounted_return=ret,
            reward_components={"accuracy": ret + 1.0, "param_cost": -1.0},
            final_accuracy=acc,
            final_loss=0.5,
            host_accuracy=70.0,
            committed_accuracy=75.0,
            germinated=germinated,
            fossilized=fossilized,
            pruned=1,
            invalid_actions=3,
            fossilized_slots=("r0c0",) * fossilized,
            seed_params=seed_params,
            host_params=1000,
            extra_compute=seed_params / 100,
            objective=acc - 1.0,
        )

    stats = EpisodeStats.from_episodes([episode(1.0, 80.0, 2, 1, 60), episode(3.0, 90.0, 0, 0, 40)])
    assert stats == EpisodeStats(
        discounted_returns=(1.0, 3.0),
        objectives=(79.0, 89.0),
        final_accuracies=(80.0, 90.0),
        reward_components={"accuracy": (2.0, 4.0), "param_cost": (-1.0, -1.0)},
        germinated=2,
        fossilized=1,
        pruned=2,
        rollbacks=0,
        params_added=100,
        extra_compute=1.0,
    )


def test_record_json_has_summary_statistics_and_timings() -> None:
    data = _record(2).to_json()
    assert (data["round"], data["episodes"]) == (2, 4)
    assert (data["mean_objective"], data["min_objective"], data["max_objective"]) == (84.0, 79.5, 88.5)
    assert (data["mean_discounted_return"], data["min_discounted_return"], data["max_discounted_return"]) == (
        2.0,
        1.0,
        3.0,
    )
    assert data["mean_reward_components"] == {"accuracy": 2.5, "param_cost": -0.5}
    assert (data["objectives"], data["discounted_returns"]) == ([79.5, 88.5], [1.0, 3.0])
    assert (data["params_added"], data["extra_compute"]) == (100, 2.5)
    assert data["mean_final_accuracy"] == 85.0
    assert data["timings"]["other_s"] == 0.25
    assert data["head_entropies"] == {"op": 0.5, "slot": None}
    json.dumps(data)


def test_run_directory_writes_config_metrics_and_summary(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "run")
    run.open(CONFIG, start_round=0)
    sink = FanOutSink(run)
    sink.on_run_start(_start())
    for r in (1, 2, 3):
        sink.on_round(_record(r))
    sink.on_run_end(_summary())
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"policy": "lstm"}
    assert [m["round"] for m in read_metrics(run.metrics_path)] == [1, 2, 3]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["rounds_completed"], summary["train_time_s"], summary["best_mean_accuracy"]) == (3, 6.0, 85.0)
    assert (summary["final_mean_objective"], summary["final_mean_discounted_return"]) == (84.0, 2.0)


def test_recording_sink_keeps_every_round_in_order() -> None:
    recording = RecordingSink()
    sink = FanOutSink(recording)
    sink.on_run_start(_start())
    for r in (1, 2):
        sink.on_round(_record(r))
    sink.on_run_end(_summary())
    assert [record.round for record in recording.records] == [1, 2]


def _strict_loads(text: str) -> Any:
    """``json.loads`` that rejects the non-standard ``NaN`` / ``Infinity`` tokens, as jq or JavaScript do."""

    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def test_strict_json_writes_non_finite_numbers_as_null() -> None:
    data = {"a": math.nan, "b": [1.5, -math.inf, {"c": math.inf}], "d": (2, None, "nan"), "e": True}
    assert strict_json(data) == '{"a": null, "b": [1.5, null, {"c": null}], "d": [2, null, "nan"], "e": true}'


def test_run_directory_files_are_strict_json_when_metrics_are_nan(tmp_path: Path) -> None:
    """Explained variance of constant returns and the grad norm of a stepless update are NaN."""
    run = RunDirectory(tmp_path)
    run.open(CONFIG, start_round=0)
    record = dataclasses.replace(
        _record(1), update={"explained_variance": math.nan, "grad_norm": math.nan, "approx_kl": 0.01}
    )
    run.on_round(record)
    run.on_run_end(dataclasses.replace(_summary(), final_mean_objective=math.inf))
    (line,) = run.metrics_path.read_text().splitlines()
    assert _strict_loads(line)["update"] == {"explained_variance": None, "grad_norm": None, "approx_kl": 0.01}
    assert read_metrics(run.metrics_path)[0]["update"]["grad_norm"] is None
    assert _strict_loads((tmp_path / "summary.json").read_text())["final_mean_objective"] is None


def test_resume_truncates_metrics_after_the_checkpoint(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    run.open(CONFIG, start_round=0)
    run.on_run_start(RunStart(CONFIG, 0, 3, 2))
    for r in (1, 2, 3):
        run.on_round(_record(r))
    run.close()
    assert run.open(CONFIG, start_round=2) == []
    assert [m["round"] for m in read_metrics(run.metrics_path)] == [1, 2]


def test_resume_drops_a_torn_last_metrics_line_and_names_a_corrupt_one(tmp_path: Path) -> None:
    """A process killed mid-append leaves half a line; resuming must not trip over it."""
    run = RunDirectory(tmp_path)
    run.open(CONFIG, start_round=0)
    run.on_run_start(RunStart(CONFIG, 0, 3, 2))
    for r in (1, 2):
        run.on_round(_record(r))
    run.close()
    intact = run.metrics_path.read_text()
    run.metrics_path.write_text(intact + strict_json(_record(3).to_json())[:40])
    run.open(CONFIG, start_round=2)
    run.close()
    assert run.metrics_path.read_text() == intact
    run.metrics_path.write_text("garbage\n" + intact)
    with pytest.raises(RunDirectoryError, match=r"metrics.jsonl' line 1 is not a metrics record \(JSONDecodeError\)"):
        run.open(CONFIG, start_round=2)


def test_console_progress_plain_lines_when_not_a_tty() -> None:
    stream = io.StringIO()
    progress = ConsoleProgress(stream, live=False, log_every=2)
    progress.on_run_start(_start())
    for r in (1, 2, 3):
        progress.on_round(_record(r))
    progress.on_run_end(_summary())
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split(" |")[0] for line in lines[1:-1]] == ["round 2/3", "round 3/3"]
    assert lines[-1].startswith("done: 3 rounds, 6 episodes")


def _live_run(stream: io.StringIO, **options: Any) -> str:
    progress = ConsoleProgress(stream, live=True, **options)
    progress.on_run_start(_start(total=2))
    progress.on_round(_record(1))
    progress.on_round(_record(2))
    progress.on_run_end(_summary())
    return stream.getvalue()


def test_console_progress_live_draws_a_rich_display_on_a_terminal() -> None:
    text = _live_run(io.StringIO())
    assert "\x1b[" in text  # drawn by rich: terminal control sequences, never hand-written
    assert "round 2/2" in text
    assert "ep 4 | return +2.000 | acc 85.0% | eta 0m00s" in text
    assert text.splitlines()[0] == "training lstm on 2 envs for 2 rounds"
    assert text.endswith(
        "\x1b[?25hdone: 3 rounds, 6 episodes in 0m12s; final mean accuracy 85.0%; checkpoint ckpt.pt\n"
    )


def test_console_progress_on_a_terminal_without_rich_prints_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    text = _live_run(io.StringIO())
    assert "\x1b" not in text and "\r" not in text
    assert [line.split(" |")[0] for line in text.splitlines()[1:-1]] == ["round 1/2", "round 2/2"]


def test_console_progress_prints_the_runs_notices_even_when_quiet() -> None:
    start = dataclasses.replace(_start(), notices=("removed 1 stale temporary file(s)",))
    for live, notices_only, lines in [(False, True, 1), (True, True, 1), (False, False, 4)]:
        stream = io.StringIO()
        progress = ConsoleProgress(stream, live=live, notices_only=notices_only)
        progress.on_run_start(start)
        progress.on_round(_record(1))
        progress.on_run_end(_summary())
        assert stream.getvalue().splitlines()[0] == "note: removed 1 stale temporary file(s)"
        assert len(stream.getvalue().splitlines()) == lines
