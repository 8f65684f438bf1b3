"""Console progress for a training run: a live line on a terminal, plain lines in logs.

On a TTY the current round overwrites one line (carriage return), ending with a newline when
the run ends. When the stream is not a terminal (CI logs, ``nohup``, a pipe) there are no control
characters: one plain line every ``log_every`` rounds and at the last round, so logs stay short.
Needs nothing beyond the standard library.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from esper.simic.training.metrics import RoundRecord, RunStart, RunSummary


def _format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ConsoleProgress:
    """A :class:`~esper.simic.training.metrics.TrainingSink` that reports progress on ``stream``.

    Args:
        stream: where to write (default ``sys.stderr``, so stdout stays clean for results).
        live: overwrite one line with ``\\r``; default: whether ``stream`` is a TTY.
        log_every: in plain mode, print every this many rounds (the last round always prints).
        notices_only: print only the run's notices (``RunStart.notices``), no progress (``--quiet``).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        log_every: int = 1,
        notices_only: bool = False,
    ) -> None:
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.stream = sys.stderr if stream is None else stream
        self.live = self.stream.isatty() if live is None else live
        self.log_every = log_every
        self.notices_only = notices_only
        self._start_round = 0
        self._total_rounds = 0
        self._started_at = 0.0
        self._width = 0

    def on_run_start(self, start: RunStart) -> None:
        self._start_round = start.start_round
        self._total_rounds = start.total_rounds
        self._started_at = time.perf_counter()
        for notice in start.notices:
            self.stream.write(f"note: {notice}\n")
        self.stream.flush()
        if self.notices_only:
            return
        resumed = f" (resuming after round {start.start_round})" if start.start_round else ""
        self.stream.write(
            f"training {start.config.get('policy', '?')} on {start.num_envs} envs for "
            f"{start.total_rounds} rounds{resumed}\n"
        )
        self.stream.flush()

    def on_round(self, record: RoundRecord) -> None:
        if self.notices_only:
            return
        line = self._line(record)
        if self.live:
            padding = " " * max(0, self._width - len(line))
            self._width = len(line)
            self.stream.write("\r" + line + padding)
        elif record.round % self.log_every == 0 or record.round == self._total_rounds:
            self.stream.write(line + "\n")
        self.stream.flush()

    def on_run_end(self, summary: RunSummary) -> None:
        if self.notices_only:
            return
        if self.live and self._width:
            self.stream.write("\n")
        where = f"; checkpoint {summary.checkpoint}" if summary.checkpoint else ""
        accuracy = "n/a" if summary.final_mean_accuracy is None else f"{summary.final_mean_accuracy:.1f}%"
        self.stream.write(
            f"done: {summary.rounds_completed} rounds, {summary.episodes_completed} episodes in "
            f"{_format_duration(summary.wall_time_s)}; final mean accuracy {accuracy}{where}\n"
        )
        self.stream.flush()

    def _line(self, record: RoundRecord) -> str:
        done = record.round - self._start_round
        elapsed = time.perf_counter() - self._started_at
        remaining = self._total_rounds - record.round
        eta = _format_duration(elapsed / done * remaining) if done > 0 else "?"
        stats = record.episode_stats
        kl = record.update.get("approx_kl")
        kl_text = f" | kl {kl:.4f}" if isinstance(kl, float) else ""
        return (
            f"round {record.round}/{self._total_rounds} | ep {record.episodes} | "
            f"objective {stats.mean_objective:.1f} | acc {stats.mean_final_accuracy:.1f}% | "
            f"fossilized {stats.fossilized}{kl_text} | {record.timings.total_s:.1f}s/round | eta {eta}"
        )
