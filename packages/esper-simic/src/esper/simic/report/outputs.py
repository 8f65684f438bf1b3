"""The two commands' library side: ``plot`` writes a run's figures as PNGs, ``report`` writes ``report.html``.

matplotlib is checked for before anything else is read and only then imported (with the figure
modules), so a missing ``plot`` extra costs one line and nothing is half-written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from esper.simic.extras import import_extra
from esper.simic.report.page import report_html
from esper.simic.report.run_files import RunFiles, load_run
from esper.simic.training.atomic import write_atomic

if TYPE_CHECKING:
    from esper.simic.report.figures import RenderedFigure

PLOTS_DIR = "plots"
"""Folder of the run directory that ``plot`` writes its PNGs into."""
REPORT_FILE = "report.html"
"""The page ``report`` writes into the run directory."""


def write_plots(run_dir: str | os.PathLike[str], *, episode: int = 0) -> list[Path]:
    """Draw the run's figures into ``run_dir/plots/`` (evaluation episode ``episode`` for the timelines).

    Returns the PNG paths written.

    Raises:
        MissingExtraError: matplotlib is not installed.
        RunFilesError: ``run_dir`` is not a readable run directory.
        ValueError: the traces hold no episode ``episode``.
    """
    run, figures = _render(run_dir, episode, command="plot")
    paths = []
    for figure in figures:
        path = run.path / PLOTS_DIR / figure.name
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, figure.png)
        paths.append(path)
    return paths


def write_report(run_dir: str | os.PathLike[str], *, episode: int = 0) -> Path:
    """Write ``run_dir/report.html``: figures, summary, evaluation table and config in one offline page.

    Raises:
        MissingExtraError: matplotlib is not installed.
        RunFilesError: ``run_dir`` is not a readable run directory.
        ValueError: the traces hold no episode ``episode``.
    """
    run, figures = _render(run_dir, episode, command="report")
    path = run.path / REPORT_FILE
    write_atomic(path, report_html(run, figures).encode("utf-8"))
    return path


def _render(run_dir: str | os.PathLike[str], episode: int, *, command: str) -> tuple[RunFiles, list[RenderedFigure]]:
    import_extra("matplotlib", extra="plot", feature=command)
    run = load_run(run_dir)
    # Imported here, after the check: the figure modules import matplotlib at their top.
    from esper.simic.report.figures import render_figures

    return run, render_figures(run, episode=episode)
