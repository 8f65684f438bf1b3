"""Console progress for a training run: a live display on a terminal, plain lines in logs.

On a terminal the run's progress is one live display drawn by ``rich`` (optional extra
``esper-simic[progress]``, imported when a live run starts): a bar with the round, the episodes, the
latest round's mean return and accuracy, and the ETA (80 columns hold it). Without ``rich`` a terminal gets
the plain lines instead (no error: the display is a convenience). When the stream is not a terminal
(CI logs, ``nohup``, a pipe) there are no control characters: one plain line every ``log_every``
rounds and at the last round, so logs stay short. ``--quiet`` prints the run's notices only.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from typing import TextIO

from esper.simic.training.metrics import RoundRecord, RunStart, RunSummary


def _format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def rich_installed() -> bool:
    """Whether ``rich`` (optional extra ``esper-simic[progress]``) can be imported."""
    return importlib.util.find_spec("rich") is not None


class LiveDisplay:
    """One run's ``rich`` progress bar on ``stream`` (a terminal), updated once per round.

    Args:
        stream: the terminal it draws on.
        start: the run (its first and last round).
    """

    def __init__(self, stream: TextIO, start: RunStart) -> None:
        from rich.console import Console  # the optional extra: imported only when a live run starts
        from rich.progress import BarColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("round {task.completed}/{task.total}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[line]}"),
            console=Console(file=stream, force_terminal=True),
        )
        self._task = self._progress.add_task(
            "training", total=start.total_rounds, completed=start.start_round, line="starting"
        )
        self._progress.start()

    def update(self, record: RoundRecord, eta: str) -> None:
        stats = record.episode_stats
        line = (
            f"ep {record.episodes} | return {stats.mean_discounted_return:+.3f} | "
            f"acc {stats.mean_final_accuracy:.1f}% | eta {eta}"
        )
        self._progress.update(self._task, completed=record.round, line=line)

    def stop(self) -> None:
        """Draw the final state and give the terminal back (cursor shown, output below the bar)."""
        self._progress.stop()


class ConsoleProgress:
    """A :class:`~esper.simic.training.metrics.TrainingSink` that reports progress on ``stream``.

    Args:
        stream: where to write (default ``sys.stderr``, so stdout stays clean for results).
        live: draw a live display (``rich``; plain lines if it is not installed); default: whether
            ``stream`` is a TTY.
        log_every: with plain lines, print every this many rounds (the last round always prints).
        notices_only: print only the run's notices (``RunStart.notices``), no progress (``--quiet``).

    A run that stops early (an exception) never reaches ``on_run_end``; use the sink as a context
    manager around it (or call :meth:`close`) so the live display gives the terminal back.
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
        self._display: LiveDisplay | None = None

    def on_run_start(self, start: RunStart) -> None:
        self.close()
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
        if self.live and start.start_round < start.total_rounds and rich_installed():
            self._display = LiveDisplay(self.stream, start)

    def on_round(self, record: RoundRecord) -> None:
        if self.notices_only:
            return
        if self._display is not None:
            self._display.update(record, self._eta(record))
        elif record.round % self.log_every == 0 or record.round == self._total_rounds:
            self.stream.write(self._line(record) + "\n")
            self.stream.flush()

    def on_run_end(self, summary: RunSummary) -> None:
        self.close()
        if self.notices_only:
            return
        where = f"; checkpoint {summary.checkpoint}" if summary.checkpoint else ""
        accuracy = "n/a" if summary.final_mean_accuracy is None else f"{summary.final_mean_accuracy:.1f}%"
        self.stream.write(
            f"done: {summary.rounds_completed} rounds, {summary.episodes_completed} episodes in "
            f"{_format_duration(summary.wall_time_s)}; final mean accuracy {accuracy}{where}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        """Stop the live display, if one is drawn (idempotent)."""
        if self._display is not None:
            self._display.stop()
            self._display = None

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _eta(self, record: RoundRecord) -> str:
        done = record.round - self._start_round
        elapsed = time.perf_counter() - self._started_at
        return _format_duration(elapsed / done * (self._total_rounds - record.round)) if done > 0 else "?"

    def _line(self, record: RoundRecord) -> str:
        stats = record.episode_stats
        kl = record.update.get("approx_kl")
        kl_text = f" | kl {kl:.4f}" if isinstance(kl, float) else ""
        return (
            f"round {record.round}/{self._total_rounds} | ep {record.episodes} | "
            f"objective {stats.mean_objective:.1f} | acc {stats.mean_final_accuracy:.1f}% | "
            f"fossilized {stats.fossilized}{kl_text} | {record.timings.total_s:.1f}s/round | eta {self._eta(record)}"
        )
