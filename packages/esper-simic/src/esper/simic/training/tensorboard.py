"""TensorBoard event files of a run: every number of ``metrics.jsonl``, and the evaluation table.

Needs the optional extra ``esper-simic[tensorboard]``; ``torch.utils.tensorboard`` is imported when
a :class:`TensorBoardSink` (or :func:`write_eval_report`) is created, never at module import, and a
missing extra raises :class:`~esper.simic.extras.MissingExtraError` naming it.

Tags are derived from the very dict a ``metrics.jsonl`` line is written from
(``RoundRecord.to_json()``), so a field added there shows up here without a second list:

- a top-level number goes under ``round/`` (``round/mean_objective``, ``round/fossilized``,
  ``round/env_steps``); the round index itself is the step, not a tag;
- a nested block keeps its path, joined with ``/`` (``update/approx_kl``, ``timings/env_s``,
  ``op_counts/WAIT``, ``head_entropies/slot``, ``mean_reward_components/accuracy``);
- a per-episode list (``objectives``, ``final_accuracies``, ``discounted_returns``) is a histogram
  of that round's episodes under ``round/`` (its mean, min and max are scalars already);
- ``None`` (a head never relevant) and non-numbers are left out; NaN is written as measured.

Two x axes: events in ``<run_dir>/tensorboard/`` are stepped by round; the same scalars, tagged
``by_env_steps/...``, go to ``<run_dir>/tensorboard/by_env_steps/`` stepped by the run's
cumulative env steps (transitions collected by all envs). Each axis has its own event file, so
each file's steps only grow, and a resumed run hides the rounds a crash wrote after its checkpoint
(``purge_step``, the analogue of the truncated ``metrics.jsonl``). TensorBoard lists the two
directories as two runs of one log directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esper.simic.extras import import_extra
from esper.simic.training.eval_report import EvalReport
from esper.simic.training.metrics import RoundRecord, RunStart, RunSummary

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

TENSORBOARD_DIR = "tensorboard"
"""Folder of a run directory holding its event files (``tensorboard --logdir <run_dir>/tensorboard``)."""
BY_ENV_STEPS = "by_env_steps"
"""Tag prefix, and subfolder, of the scalars stepped by cumulative env steps instead of rounds."""
ROUND_GROUP = "round"
"""Tag group of a round record's top-level numbers."""


def summary_writer_class() -> type[SummaryWriter]:
    """``torch.utils.tensorboard.SummaryWriter``; ``MissingExtraError`` naming the extra if TensorBoard is missing."""
    module = import_extra("torch.utils.tensorboard", extra="tensorboard", feature="--tensorboard")
    writer: type[SummaryWriter] = module.SummaryWriter
    return writer


def numeric_leaves(data: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, float], dict[str, list[float]]]:
    """``(scalars, series)`` of a JSON-like mapping: tag (``prefix`` + '/'-joined keys) → number, and
    tag → list of numbers. Booleans, strings, ``None`` and lists holding anything but numbers are left out."""
    scalars: dict[str, float] = {}
    series: dict[str, list[float]] = {}
    for key, value in data.items():
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            inner_scalars, inner_series = numeric_leaves(value, f"{tag}/")
            scalars.update(inner_scalars)
            series.update(inner_series)
        elif _is_number(value):
            scalars[tag] = float(value)
        elif isinstance(value, (list, tuple)) and value and all(_is_number(item) for item in value):
            series[tag] = [float(item) for item in value]
    return scalars, series


def round_tags(row: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Scalars and histograms of one ``metrics.jsonl`` record (``RoundRecord.to_json()``), tagged as the
    module docstring says."""
    top = {key: value for key, value in row.items() if key != "round" and not isinstance(value, Mapping)}
    blocks = {key: value for key, value in row.items() if isinstance(value, Mapping)}
    return numeric_leaves({ROUND_GROUP: top, **blocks})


class TensorBoardSink:
    """A :class:`~esper.simic.training.metrics.TrainingSink` writing each round to TensorBoard event files.

    The writers are opened at the run's first round (a resume that has nothing left to train writes
    nothing) and closed at its end; every round is flushed, so a live ``tensorboard`` sees it at once.
    Only the process that receives the events writes: the trainer hands sinks to rank 0 alone, so
    other ranks of a multi-process run never open a writer. One sink can observe several runs in turn
    (``study``): each run start closes the previous run's writers.

    Args:
        log_dir: folder of the event files; None: ``<out_dir>/tensorboard`` of each run it observes
            (``out_dir`` from the run's resolved config; a run without one is refused).

    Raises:
        MissingExtraError: TensorBoard is not installed (raised here, before any run starts).
    """

    def __init__(self, log_dir: str | Path | None = None) -> None:
        self._writer_class = summary_writer_class()
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._start: RunStart | None = None
        self._log_dir: Path | None = None
        self._env_steps = 0
        self._writers: tuple[SummaryWriter, SummaryWriter] | None = None

    def on_run_start(self, start: RunStart) -> None:
        self._close()
        out_dir = start.config.get("out_dir")
        if self.log_dir is not None:
            self._log_dir = self.log_dir
        elif out_dir is not None:
            self._log_dir = Path(out_dir) / TENSORBOARD_DIR
        else:
            raise ValueError("TensorBoard logging needs a run directory (out_dir) or an explicit log_dir")
        self._start = start
        self._env_steps = start.env_steps

    def on_round(self, record: RoundRecord) -> None:
        by_round, by_env_steps = self._open()
        self._env_steps += record.env_steps
        scalars, series = round_tags(record.to_json())
        for tag, value in scalars.items():
            by_round.add_scalar(tag, value, record.round)
            by_env_steps.add_scalar(f"{BY_ENV_STEPS}/{tag}", value, self._env_steps)
        for tag, values in series.items():
            by_round.add_histogram(tag, np.asarray(values), record.round)
        by_round.flush()
        by_env_steps.flush()

    def on_run_end(self, summary: RunSummary) -> None:
        del summary
        self._close()

    def _open(self) -> tuple[SummaryWriter, SummaryWriter]:
        """The run's two writers, opened at its first round with the resolved config as text."""
        if self._writers is None:
            if self._start is None or self._log_dir is None:
                raise RuntimeError("TensorBoardSink got a round before on_run_start")
            start = self._start
            by_round = self._writer_class(str(self._log_dir), purge_step=start.start_round + 1)
            by_env_steps = self._writer_class(str(self._log_dir / BY_ENV_STEPS), purge_step=start.env_steps + 1)
            by_round.add_text("config", _code_block(json.dumps(dict(start.config), indent=2)), start.start_round)
            self._writers = (by_round, by_env_steps)
        return self._writers

    def _close(self) -> None:
        if self._writers is not None:
            for writer in self._writers:
                writer.close()
            self._writers = None


def eval_tags(report: EvalReport) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Scalars and histograms of an evaluation: every number of each row of ``eval.json``, as
    ``eval/<policy>/<field>`` (``eval/heuristic/mean_objective``, ``eval/heuristic/learned_minus_row_objective``)."""
    scalars: dict[str, float] = {}
    series: dict[str, list[float]] = {}
    for row in report.to_json()["rows"]:
        fields = {key: value for key, value in row.items() if key != "policy"}
        row_scalars, row_series = numeric_leaves(fields, f"eval/{row['policy']}/")
        scalars.update(row_scalars)
        series.update(row_series)
    return scalars, series


def write_eval_report(log_dir: str | Path, report: EvalReport, *, step: int) -> Path:
    """Write ``report`` into ``log_dir`` at ``step`` (the evaluated checkpoint's round): its numbers
    as :func:`eval_tags` scalars (several evaluations of one run make a curve) and histograms, and the
    printed table as text (``eval/table``, the one-glance comparison). Returns ``log_dir``.

    Raises:
        MissingExtraError: TensorBoard is not installed.
    """
    folder = Path(log_dir)
    writer = summary_writer_class()(str(folder))
    try:
        scalars, series = eval_tags(report)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
        for tag, values in series.items():
            writer.add_histogram(tag, np.asarray(values), step)
        writer.add_text("eval/table", _code_block(report.table()), step)
    finally:
        writer.close()
    return folder


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _code_block(text: str) -> str:
    """``text`` as a Markdown code block (TensorBoard renders text summaries as Markdown), so columns line up."""
    return "\n".join("    " + line for line in text.splitlines())
