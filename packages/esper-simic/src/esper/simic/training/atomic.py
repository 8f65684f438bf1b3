"""All-or-nothing file writes for the run directory: a file holds its old bytes or its new ones, never a mix.

Both helpers raise the ``OSError`` of a failed write (a full disk: ``ENOSPC``) after undoing what
they did, so the caller can wrap it into a one-line error that names the file. Files are created
with mode ``0o666`` and the process umask, like any file Python's ``open`` creates, so checkpoints
get the same permissions as ``config.json`` (``tempfile.mkstemp`` would make them ``0600``).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

_TEMPORARY = re.compile(r"\.(?P<target>.+?)(?:\.[A-Za-z0-9_]{8})?\.tmp")
"""Name of a temporary file of :func:`write_atomic` (``.NAME.XXXXXXXX.tmp``; older Esper versions
wrote ``.NAME.tmp`` and ``tempfile.mkstemp`` names, which match too)."""


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file holding ``data``: a temporary beside it, fsync, then ``os.replace``.

    A crash leaves either the old file or the new one (plus, after a kill, a stale temporary that
    :func:`temporary_target` recognises). On any failure the temporary is removed before the
    error propagates.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_whole(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created if missing), or leave the file as it was if that fails.

    A failed write (full disk) may have stored part of ``data``; the file is cut back to its former
    size, so a reader never sees half a line.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def temporary_target(name: str) -> str | None:
    """The file name a temporary named ``name`` was about to replace, or None if it is not one."""
    match = _TEMPORARY.fullmatch(name)
    return None if match is None else match.group("target")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
