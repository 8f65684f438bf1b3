"""The run directory: resolved config, ``metrics.jsonl``, checkpoints and ``summary.json``.

Layout of ``out_dir``::

    config.json                  the resolved TrainConfig (rewritten on resume)
    metrics.jsonl                one RoundRecord.to_json() per line, in round order
    checkpoint_last.pt           rolling checkpoint (every K rounds and at the end)
    checkpoint_round_XXXX.pt     numbered copies when keep_checkpoints is on
    summary.json                 RunSummary of the last invocation

:class:`RunDirectory` is itself a :class:`~esper.simic.training.metrics.TrainingSink`, so the
trainer writes files through the same seam as any other observer. Every file is strict JSON
(:func:`strict_json`): a non-finite number is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esper.simic.training.checkpoint import LAST_CHECKPOINT, round_checkpoint_name
from esper.simic.training.metrics import RoundRecord, RunStart, RunSummary

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


class RunDirectoryError(Exception):
    """The run directory cannot be used (e.g. it already holds a different run)."""


class RunDirectory:
    """Files of one training run under ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT

    def round_checkpoint(self, round_index: int) -> Path:
        return self.path / round_checkpoint_name(round_index)

    def prepare(self, *, start_round: int) -> None:
        """Create the directory; on resume keep only metrics of rounds ``<= start_round``.

        Raises:
            RunDirectoryError: the path is an existing file, or a fresh run (``start_round == 0``)
                pointed at a directory that already has metrics, which would mix two runs in one file.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirectoryError(f"run directory {str(self.path)!r} is an existing file, not a directory")
        if start_round == 0 and self.metrics_path.exists() and self.metrics_path.stat().st_size > 0:
            raise RunDirectoryError(
                f"run directory {str(self.path)!r} already contains a run; choose another output "
                f"directory or resume from {str(self.last_checkpoint)!r}"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        if start_round > 0:
            self._truncate_metrics(start_round)

    def _truncate_metrics(self, keep_through_round: int) -> None:
        """Drop lines of rounds after the checkpoint (written before a crash), keeping the file exact.

        A process killed while appending leaves a torn last line. It is dropped rather than blocking
        the resume: only that round's record is lost, never training state (checkpoints are atomic).

        Raises:
            RunDirectoryError: a line other than the last is not a metrics record.
        """
        if not self.metrics_path.exists():
            return
        lines = [line for line in self.metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept: list[str] = []
        for number, line in enumerate(lines, start=1):
            try:
                round_index = json.loads(line)["round"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                if number == len(lines):
                    break
                raise RunDirectoryError(
                    f"{str(self.metrics_path)!r} line {number} is not a metrics record ({type(exc).__name__}); "
                    "fix or remove the file to resume"
                ) from exc
            if round_index <= keep_through_round:
                kept.append(line)
        _write_text_atomic(self.metrics_path, "".join(line + "\n" for line in kept))

    def on_run_start(self, start: RunStart) -> None:
        _write_text_atomic(self.path / CONFIG_FILE, _dumps(dict(start.config)))

    def on_round(self, record: RoundRecord) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(strict_json(record.to_json()) + "\n")

    def on_run_end(self, summary: RunSummary) -> None:
        _write_text_atomic(self.path / SUMMARY_FILE, _dumps(summary.to_json()))


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse a ``metrics.jsonl`` file into one dict per round."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def strict_json(data: Any, *, indent: int | None = None) -> str:
    """Standard JSON text of ``data`` with every non-finite float (NaN, +-inf) written as ``null``.

    Python's ``json`` writes bare ``NaN``/``Infinity`` by default, which strict parsers (``jq``,
    JavaScript, most dataframe readers) reject, and metrics do hold NaN legitimately: the explained
    variance of constant returns, the gradient norm of an update that took no step. ``None`` means
    "no value" to a reader. ``allow_nan=False`` makes anything the sanitiser missed fail loudly
    rather than write invalid JSON.
    """
    return json.dumps(_finite(data), indent=indent, allow_nan=False)


def _finite(value: Any) -> Any:
    """Copy of a JSON-ready value (dicts, lists, tuples, scalars) with non-finite floats as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _dumps(data: Any) -> str:
    return strict_json(data, indent=2) + "\n"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
