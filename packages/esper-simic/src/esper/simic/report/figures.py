"""Which figures a run directory gives, rendered to PNG bytes (``plot`` writes them, ``report`` embeds them).

Always the learning curves; with an evaluation's traces, also the episode timelines of the learned
policy (greedy), the heuristic and no growth on one evaluation episode, the three rows a reader
compares first. Figures are drawn on Agg canvases (no pyplot, so no global figure registry and no
display needed) and saved without the matplotlib version in the PNG metadata, so the same run
gives the same bytes on any install of the same matplotlib.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from esper.simic.report.curves import learning_curves
from esper.simic.report.run_files import RunFiles
from esper.simic.report.timeline import PolicyEpisode, episode_timelines
from esper.simic.training.evaluation import HEURISTIC, NO_GROWTH

DPI = 80
"""Pixels per inch of the PNGs: an 11–12 inch wide figure is about 900 px, readable on a laptop screen."""


@dataclass(frozen=True, slots=True)
class RenderedFigure:
    """One figure as a PNG file's bytes."""

    name: str
    """File name (``learning_curves.png``)."""
    caption: str
    """One sentence saying what the figure shows."""
    png: bytes


def render_figures(run: RunFiles, *, episode: int = 0) -> list[RenderedFigure]:
    """The learning curves, then the timelines of evaluation episode ``episode`` if the run was evaluated.

    Raises:
        ValueError: the run has traces but none of ``episode``.
    """
    compared = compared_episodes(run, episode)  # first: a bad episode index fails before any drawing
    figures = [
        RenderedFigure(
            "learning_curves.png",
            f"Learning curves of {len(run.rounds)} round(s): returns and final accuracies with their min–max band, "
            "what the policy did to the hosts, how it acts, and the PPO update's health.",
            _png(learning_curves(run.rounds, f"{run.name}: training")),
        )
    ]
    if compared:
        seed = compared[0].trace.seed
        figures.append(
            RenderedFigure(
                f"episode_{episode}_timeline.png",
                f"Evaluation episode {episode} (reset seed {seed}), played by each policy on the same host and data: "
                "every slot's stage and alpha per epoch, then the validation accuracy the policies reached.",
                _png(episode_timelines(compared, f"{run.name}: evaluation episode {episode}, seed {seed}")),
            )
        )
    return figures


def compared_episodes(run: RunFiles, episode: int) -> list[PolicyEpisode]:
    """The traces of episode ``episode`` of the learned policy (greedy), the heuristic and no growth, those present.

    Raises:
        ValueError: the run has traces but none of ``episode``.
    """
    reference = run.evaluation.get("reference") if run.evaluation is not None else None
    roles = [(HEURISTIC, HEURISTIC), (NO_GROWTH, NO_GROWTH)]
    if isinstance(reference, str):
        roles.insert(0, (reference, f"learned: {reference}"))
    present = [(policy, label) for policy, label in roles if policy in run.traces]
    if not present:
        return []
    compared = []
    for policy, label in present:
        traces = {trace.episode: trace for trace in run.traces[policy]}
        if episode not in traces:
            raise ValueError(f"evaluation episode {episode} was not traced; the traces hold episodes {sorted(traces)}")
        compared.append(PolicyEpisode(label, traces[episode]))
    return compared


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)  # attaches itself as the figure's canvas
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
