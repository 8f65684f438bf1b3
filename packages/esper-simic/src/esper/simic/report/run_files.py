"""What ``plot`` and ``report`` read from a run directory: the round records, config, summary and evaluation.

A run directory (``training/run_dir.py``) always holds ``metrics.jsonl`` once a round finished;
``config.json`` and ``summary.json`` are written at the start and the end of each invocation, and
``eval.json`` with ``traces.jsonl`` only after ``esper-train eval`` on the directory's checkpoint
(their default place). Everything but the metrics is optional here: a figure or section whose
file is missing is left out, and the report says which command would produce it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esper.simic.training.run_dir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE
from esper.simic.training.traces import TRACES_FILE, EpisodeTrace, read_traces

EVAL_FILE = "eval.json"
"""Name of the evaluation report ``esper-train eval`` writes next to the checkpoint it evaluates."""


class RunFilesError(Exception):
    """The directory is not a readable Esper run directory (missing, foreign, no round yet). One line."""


@dataclass(frozen=True, slots=True)
class RunFiles:
    """The files of one run directory, parsed."""

    path: Path
    """The run directory."""
    rounds: tuple[Mapping[str, Any], ...]
    """``metrics.jsonl``: one ``RoundRecord.to_json()`` per round, in round order (at least one)."""
    config: Mapping[str, Any] | None
    """``config.json``, the resolved training config; None if absent."""
    summary: Mapping[str, Any] | None
    """``summary.json``, the run summary; None if absent (an interrupted run)."""
    evaluation: Mapping[str, Any] | None
    """``eval.json``, the evaluation report; None if ``eval`` was not run on the directory."""
    traces: Mapping[str, tuple[EpisodeTrace, ...]]
    """``traces.jsonl``: policy → its evaluation episodes; empty if absent."""

    @property
    def name(self) -> str:
        """The run's display name (its directory's name)."""
        return self.path.resolve().name


def load_run(path: str | os.PathLike[str]) -> RunFiles:
    """Read the run directory ``path``.

    Raises:
        RunFilesError: ``path`` is not a directory, has no ``metrics.jsonl`` or no round in it, or
            a file is not what an Esper run writes there.
        ValueError: ``traces.jsonl`` holds a line that is not a step trace.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise RunFilesError(f"run directory {str(directory)!r} does not exist or is not a directory")
    metrics = directory / METRICS_FILE
    if not metrics.is_file():
        raise RunFilesError(f"{str(directory)!r} is not an Esper run directory (no {METRICS_FILE})")
    rounds = _read_rounds(metrics)
    traces_file = directory / TRACES_FILE
    return RunFiles(
        path=directory,
        rounds=rounds,
        config=_read_object(directory / CONFIG_FILE),
        summary=_read_object(directory / SUMMARY_FILE),
        evaluation=_read_object(directory / EVAL_FILE),
        traces=read_traces(traces_file) if traces_file.is_file() else {},
    )


def _read_rounds(path: Path) -> tuple[Mapping[str, Any], ...]:
    """The round records of ``metrics.jsonl``; a torn last line (a run killed mid-append) is skipped."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rounds: list[Mapping[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("round"), int):
            raise RunFilesError(f"{str(path)!r} line {number} is not an Esper round record")
        rounds.append(record)
    if not rounds:
        raise RunFilesError(f"{str(path)!r} holds no finished round yet")
    return tuple(rounds)


def _read_object(path: Path) -> Mapping[str, Any] | None:
    """The JSON object in ``path``, None if there is no such file.

    Raises:
        RunFilesError: the file is not a JSON object.
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFilesError(f"{str(path)!r} is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RunFilesError(f"{str(path)!r} is not a JSON object")
    return data


def column(rounds: Sequence[Mapping[str, Any]], *keys: str) -> list[float]:
    """The value at ``keys`` (a path into nested objects) of every round, NaN where absent or null.

    A NaN leaves a gap in a curve, so a field an older run did not record, or a diagnostic an
    update did not produce, shows as missing rather than as zero.
    """
    values = []
    for record in rounds:
        value: Any = record
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        values.append(float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan"))
    return values
