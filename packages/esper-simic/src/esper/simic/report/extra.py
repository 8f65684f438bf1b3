"""The optional ``plot`` extra: matplotlib is imported only by the commands that draw.

Training and evaluation never need it, so it is not a dependency of ``esper-simic``; a command
that draws checks for it first and, without it, stops with one line naming what to install.
"""

from __future__ import annotations

import importlib

PLOT_EXTRA = "esper-simic[plot]"
"""The extra that installs matplotlib."""


class MissingExtraError(Exception):
    """An optional dependency a command needs is not installed. One line naming the extra."""


def require_matplotlib(command: str) -> None:
    """Import matplotlib (without pyplot: figures are drawn on Agg canvases, no global state).

    Raises:
        MissingExtraError: matplotlib is not installed; the message names ``command`` and the extra.
    """
    try:
        importlib.import_module("matplotlib")
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        raise MissingExtraError(f"{command} needs the optional extra: pip install '{PLOT_EXTRA}'") from None
