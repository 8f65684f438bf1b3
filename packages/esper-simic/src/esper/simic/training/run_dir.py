"""The run directory: resolved config, ``metrics.jsonl``, checkpoints and ``summary.json``, owned by one run.

Layout of ``out_dir``::

    run.lock                     locked (flock) by the run writing here, for its whole life; never removed
    config.json                  the resolved TrainConfig (rewritten on resume)
    metrics.jsonl                one RoundRecord.to_json() per line, in round order (a resume into another
                                 directory starts with the rounds recorded beside its checkpoint)
    checkpoint_last.pt           rolling checkpoint (every K rounds and at the end)
    checkpoint_round_XXXX.pt     numbered copies when keep_checkpoints is on
    summary.json                 RunSummary of the whole run, rewritten at the end of each invocation

Ownership: :meth:`RunDirectory.open` takes an exclusive, non-blocking lock on ``run.lock`` (a
second writer is refused at once) and only then looks at the files. A run writes only the files
above; if any of them exists, ``config.json`` must describe the same experiment (fields other than
:data:`~esper.simic.training.config.RESUME_OVERRIDABLE` equal), otherwise the files are someone
else's and the run is refused, naming them. Other files (notes, ``eval.json``) are left alone.

:class:`RunDirectory` is itself a :class:`~esper.simic.training.metrics.TrainingSink`, so the
trainer writes files through the same seam as any other observer. Every file is strict JSON
(:func:`strict_json`): a non-finite number is written as ``null``. Every write is all-or-nothing
(:mod:`~esper.simic.training.atomic`), and a failed one raises :class:`RunDirectoryError` naming
the file.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esper.simic.training.atomic import append_whole, temporary_target, write_atomic
from esper.simic.training.checkpoint import LAST_CHECKPOINT, round_checkpoint_name
from esper.simic.training.metrics import RoundRecord, RunStart, RunSummary
from esper.simic.training.resume import config_differences, describe_differences

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = "run.lock"
RESUME_AUTO = "auto"
"""``resume`` value meaning "the run directory's latest checkpoint if there is one, else start fresh"."""

_ROUND_CHECKPOINT = re.compile(r"checkpoint_round_(\d{4,})\.pt")
_RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, LAST_CHECKPOINT)


class RunDirectoryError(Exception):
    """The run directory cannot be used (another run's files or lock, a failed write). One line."""


class RunDirectoryBusyError(RunDirectoryError):
    """Another process holds the run directory's lock."""


class RunDirectoryStartedError(RunDirectoryError):
    """A fresh start in a directory that already holds a checkpoint of this run (``checkpoint``: the latest)."""

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class RunDirectory:
    """Files of one training run under ``path``; written only between :meth:`open` and :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT

    def round_checkpoint(self, round_index: int) -> Path:
        return self.path / round_checkpoint_name(round_index)

    def latest_checkpoint(self) -> Path | None:
        """``checkpoint_last.pt``, else the highest numbered checkpoint, else None (also for no directory)."""
        if self.last_checkpoint.is_file():
            return self.last_checkpoint
        numbered = [(int(m[1]), p) for p in self._files() if (m := _ROUND_CHECKPOINT.fullmatch(p.name))]
        return max(numbered)[1] if numbered else None

    def open(self, config: Mapping[str, Any], *, start_round: int) -> list[str]:
        """Create and lock the directory for the run with resolved ``config``; returns notices for the user.

        After the lock: refuse files another run (or a user) wrote, remove stale temporary files
        left by a killed write (only where this run's ``config.json`` shows the directory held it
        before: in a fresh or foreign directory a file named like a temporary is a user's), then
        make ``metrics.jsonl`` end at ``start_round``: a resume drops
        the lines of rounds after its checkpoint, a fresh start (round 0) of a run that crashed
        before its first checkpoint drops all of them and says so.

        Raises:
            RunDirectoryBusyError: another run holds the directory.
            RunDirectoryError: the path is a file or cannot be created; a file the run would write
                belongs to another run; a fresh start where this run already has a checkpoint
                (the message names it for ``--resume``); a corrupt metrics line.
        """
        self._create()
        self._lock()
        try:
            self._check_owner(config)
            if start_round == 0:
                self._refuse_restart_over_checkpoint()
            notices = self._remove_stale_temporaries()
            notices += self._truncate_metrics(start_round)
        except BaseException:
            self.close()
            raise
        return notices

    def adopt_history(self, checkpoint: Path, config: Mapping[str, Any], *, start_round: int) -> list[str]:
        """Start an empty ``metrics.jsonl`` with rounds ``1..start_round`` of the run that wrote ``checkpoint``.

        A resume into another directory (``--resume a/checkpoint_last.pt --out b``) continues a run
        whose rounds so far are recorded beside the checkpoint. Their lines are copied as they are
        (timings included), so this directory's metrics and ``summary.json`` (best round, total
        train time) are those of the whole run, as if it had run here all along. Nothing is copied
        into a directory that already records rounds (it holds this run), from the same directory, or
        from a resume at round 0. The source is only read, never locked: it may be another run's.

        Returns notices: what was copied, or why nothing could be (a checkpoint without its run
        directory, one of another experiment, a round missing), in which case this directory
        records the run from round ``start_round + 1`` on.
        """
        self._require_lock()
        source = RunDirectory(checkpoint.parent)
        if start_round == 0 or self._metrics_lines()[0] or source.path.samefile(self.path):
            return []
        lines, reason = source._recorded_rounds(config, start_round)
        rounds = "round 1" if start_round == 1 else f"rounds 1-{start_round}"
        if lines is None:
            return [
                f"no metrics of {rounds} beside {str(checkpoint)!r} ({reason}): {str(self.path)!r} records "
                f"rounds {start_round + 1} on, and its summary covers only them"
            ]
        self._write(self.path / CONFIG_FILE, _dumps(dict(config)))  # first, as always: it claims the files after it
        self._write(self.metrics_path, "".join(line + "\n" for line in lines))
        copied = f"copied the metrics of {rounds} from {str(source.metrics_path)!r}"
        return [f"{copied}: this run directory holds the whole run"]

    def close(self) -> None:
        """Release the lock (idempotent); the lock file stays, so a later run locks the same file."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def round_rows(self, through_round: int) -> list[dict[str, Any]]:
        """``metrics.jsonl`` records of rounds ``1..through_round`` (none if the file is missing)."""
        return [json.loads(line) for index, line in self._metrics_lines()[0] if index <= through_round]

    def on_run_start(self, start: RunStart) -> None:
        self._write(self.path / CONFIG_FILE, _dumps(dict(start.config)))

    def on_round(self, record: RoundRecord) -> None:
        self._require_lock()
        try:
            append_whole(self.metrics_path, (strict_json(record.to_json()) + "\n").encode())
        except OSError as exc:
            raise RunDirectoryError(f"cannot write {str(self.metrics_path)!r}: {exc.strerror or exc}") from exc

    def on_run_end(self, summary: RunSummary) -> None:
        self._write(self.path / SUMMARY_FILE, _dumps(summary.to_json()))

    def _create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunDirectoryError(f"run directory {str(self.path)!r} is an existing file, not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create run directory {str(self.path)!r}: {exc.strerror or exc}") from exc

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create {str(lock)!r}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirectoryBusyError(
                f"run directory {str(self.path)!r} is in use: another run holds its lock ({LOCK_FILE}); "
                "wait for it to end or choose another output directory"
            ) from None
        self._lock_fd = fd

    def _require_lock(self) -> None:
        if self._lock_fd is None:
            raise RunDirectoryError(f"run directory {str(self.path)!r} is not open for writing (call open first)")

    def _files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.is_file()) if self.path.is_dir() else []

    def _check_owner(self, config: Mapping[str, Any]) -> None:
        """Refuse unless every run file here belongs to the experiment of ``config``.

        ``config.json`` is the run's identity card: it is written before any other run file, so a
        run file without it, or beside one with other top-level keys (a user's own config), is
        not this run's; one with the same keys must match in every field a resume may not change.
        """
        owned = [p for p in self._files() if _is_run_file(p.name)]
        if not owned:
            return
        config_path = self.path / CONFIG_FILE
        if not config_path.is_file():
            raise RunDirectoryError(
                f"{str(owned[0])!r} was not written by this run (no {CONFIG_FILE} of an Esper run beside it); "
                "choose another output directory or move the file"
            )
        saved = _read_json(config_path)
        if not isinstance(saved, dict) or saved.keys() != config.keys():
            raise RunDirectoryError(
                f"{str(config_path)!r} was not written by this run (not an Esper run config of this version); "
                "choose another output directory or move the file"
            )
        differences = config_differences(saved, config)
        if differences:
            raise RunDirectoryError(
                f"{str(config_path)!r} belongs to another run "
                f"({describe_differences(differences, saved_name=CONFIG_FILE)}); choose another output directory"
            )

    def _remove_stale_temporaries(self) -> list[str]:
        """Delete temporaries of the run's files that a killed write left behind.

        Only in a directory that holds the run (its ``config.json``, checked by :meth:`_check_owner`,
        is written before any other run file): a directory that never held one has no temporaries
        of this run, and a user's ``.config.json.tmp`` there is kept.
        """
        if not (self.path / CONFIG_FILE).is_file():
            return []
        stale = [p for p in self._files() if _is_run_file(temporary_target(p.name))]
        for path in stale:
            path.unlink(missing_ok=True)
        if not stale:
            return []
        return [f"removed {len(stale)} stale temporary file(s) left by an interrupted write: {[p.name for p in stale]}"]

    def _refuse_restart_over_checkpoint(self) -> None:
        checkpoint = self.latest_checkpoint()
        if checkpoint is not None:
            raise RunDirectoryStartedError(
                f"run directory {str(self.path)!r} already holds this run up to {checkpoint.name}; continue it "
                f"with --resume {shlex.quote(str(checkpoint))} (or --resume auto), or choose another output directory",
                checkpoint,
            )

    def _truncate_metrics(self, keep_through_round: int) -> list[str]:
        """Drop lines of rounds after ``keep_through_round`` (a crash wrote them after the last checkpoint).

        The file is rewritten only if a line goes, so a resume that drops nothing leaves it untouched.
        """
        entries, intact = self._metrics_lines()
        kept = [line for index, line in entries if index <= keep_through_round]
        if len(kept) == len(entries) and intact:
            return []
        self._write(self.metrics_path, "".join(line + "\n" for line in kept))
        if keep_through_round > 0 or not entries:
            return []
        return [
            f"no checkpoint in {str(self.path)!r}: starting the run again from round 0, dropping "
            f"{len(entries)} metrics line(s) of the interrupted attempt"
        ]

    def _recorded_rounds(self, config: Mapping[str, Any], through_round: int) -> tuple[list[str] | None, str]:
        """The metrics lines of rounds ``1..through_round``, if this directory records them for the
        experiment of ``config``; else None and why not."""
        saved = _read_json(self.path / CONFIG_FILE)
        if not isinstance(saved, dict) or saved.keys() != config.keys():
            return None, f"no {CONFIG_FILE} of this run in {str(self.path)!r}"
        if config_differences(saved, config):
            return None, f"{str(self.path / CONFIG_FILE)!r} belongs to another run"
        try:
            entries, _ = self._metrics_lines()
        except RunDirectoryError:
            return None, f"{str(self.metrics_path)!r} is corrupt"
        if not self.metrics_path.is_file():
            return None, f"no {METRICS_FILE} in {str(self.path)!r}"
        kept = [(index, line) for index, line in entries if index <= through_round]
        if [index for index, _ in kept] != list(range(1, through_round + 1)):
            return None, f"{str(self.metrics_path)!r} lacks some of them"
        return [line for _, line in kept], ""

    def _metrics_lines(self) -> tuple[list[tuple[int, str]], bool]:
        """``(round, line)`` of each metrics record, and whether the file ends cleanly (with a newline).

        A torn last line (a kill mid-append) is skipped rather than blocking a resume: only that
        round's record is lost, never training state (checkpoints are atomic).

        Raises:
            RunDirectoryError: a line other than the last is not a metrics record.
        """
        if not self.metrics_path.is_file():
            return [], True
        text = self.metrics_path.read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if line.strip()]
        entries: list[tuple[int, str]] = []
        for number, line in enumerate(lines, start=1):
            try:
                entries.append((int(json.loads(line)["round"]), line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                if number == len(lines):
                    return entries, False
                raise RunDirectoryError(
                    f"{str(self.metrics_path)!r} line {number} is not a metrics record ({type(exc).__name__}); "
                    "fix or remove the file to resume"
                ) from exc
        return entries, text == "" or text.endswith("\n")

    def _write(self, path: Path, text: str) -> None:
        self._require_lock()
        try:
            write_atomic(path, text.encode("utf-8"))
        except OSError as exc:
            raise RunDirectoryError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc


def resolve_resume(resume: str | os.PathLike[str] | None, out_dir: str | os.PathLike[str] | None) -> Path | None:
    """The checkpoint a run continues from: ``resume`` itself, or for :data:`RESUME_AUTO` the latest
    checkpoint in ``out_dir`` (None there: start fresh).

    Raises:
        RunDirectoryError: ``auto`` without a run directory to look in.
    """
    if resume is None:
        return None
    if str(resume) != RESUME_AUTO:
        return Path(resume)
    if out_dir is None:
        raise RunDirectoryError("resume 'auto' needs the run directory to continue (--out DIR / out_dir)")
    return RunDirectory(out_dir).latest_checkpoint()


def claim_new_run_directory(parent: Path, name: str) -> Path:
    """Create ``parent / name`` exclusively, or ``name-2``, ``name-3``, ... if taken; returns it.

    ``os.mkdir`` fails if the directory exists, so two runs started in the same second (the
    default ``--out`` has one-second resolution) never share a directory.
    """
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for suffix in range(1, 10_000):
            candidate = parent / (name if suffix == 1 else f"{name}-{suffix}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
    except OSError as exc:
        raise RunDirectoryError(f"cannot create a run directory in {str(parent)!r}: {exc.strerror or exc}") from exc
    raise RunDirectoryError(f"cannot create a run directory in {str(parent)!r}: {name}-2 to {name}-9999 all exist")


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


def _read_json(path: Path) -> Any:
    """The JSON value in ``path``, or None if it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _is_run_file(name: str | None) -> bool:
    return name is not None and (name in _RUN_FILES or _ROUND_CHECKPOINT.fullmatch(name) is not None)


def _dumps(data: Any) -> str:
    return strict_json(data, indent=2) + "\n"
