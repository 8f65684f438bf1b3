"""Seed-lifecycle timelines of one evaluation episode, one per policy, above their validation-accuracy curves.

Each policy gets a strip of slots × epochs: a cell is coloured by the slot's stage after that
epoch's step, the seed's blend amplitude alpha is drawn across its row (bottom of the row: 0, top:
1), and germinations, fossilizations and prunings are marked where they happen. Every policy
played the same episode (same reset seed: same data order, same host initialisation), so the
strips differ only by what the policies did, and the accuracy panel below shows what it was worth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from esper.simic.report.seed_events import LIVE_STAGES, SeedEventKind, seed_events
from esper.simic.training.traces import EpisodeTrace
from esper.tamiyo.contract import SeedStage

#: Stage → cell colour: empty slots pale, a live seed warm while it trains and blue as it blends in,
#: green once it is part of the host, red shades on the way out.
STAGE_COLOURS = {
    SeedStage.UNKNOWN.name: "#ffffff",
    SeedStage.DORMANT.name: "#f1f1f1",
    SeedStage.GERMINATED.name: "#fde68a",
    SeedStage.TRAINING.name: "#f59e0b",
    SeedStage.BLENDING.name: "#60a5fa",
    SeedStage.HOLDING.name: "#a78bfa",
    SeedStage.FOSSILIZED.name: "#34d399",
    SeedStage.PRUNED.name: "#ef4444",
    SeedStage.EMBARGOED.name: "#fca5a5",
    SeedStage.RESETTING.name: "#d1d5db",
}
#: Event → (marker, colour, size in points, label) of its mark; a star is drawn larger, its area being small.
EVENT_MARKS = {
    SeedEventKind.GERMINATE: ("^", "#14532d", 10, "germinate"),
    SeedEventKind.FOSSILIZE: ("*", "#1e3a8a", 15, "fossilize"),
    SeedEventKind.PRUNE: ("X", "#7f1d1d", 10, "prune"),
}
#: Line colours and styles of the policies, in the order they are given (learned, heuristic, no growth, ...);
#: the styles keep curves that coincide (no policy grew anything yet) all visible.
POLICY_COLOURS = ("#2563eb", "#ea580c", "#6b7280", "#16a34a", "#9333ea")
POLICY_LINES = (("-", 3.0), ("--", 2.0), (":", 2.0))
#: Stages in which a slot holds a seed module, whose alpha the strip draws.
SEED_STAGES = LIVE_STAGES | {SeedStage.FOSSILIZED.name}
#: Height of a slot's row taken by the alpha line (the rest is margin between rows).
ALPHA_SPAN = 0.8


@dataclass(frozen=True, slots=True)
class PolicyEpisode:
    """One policy's trace of the episode the figure shows."""

    label: str
    """How the figure names the policy."""
    trace: EpisodeTrace


def episode_timelines(episodes: Sequence[PolicyEpisode], title: str) -> Figure:
    """A timeline strip per policy (in the order given) above one panel of their validation accuracies.

    Raises:
        ValueError: no episodes, or an episode without steps.
    """
    if not episodes or any(not e.trace.steps for e in episodes):
        raise ValueError("an episode timeline needs at least one policy's trace with at least one step")
    num_slots = len(episodes[0].trace.steps[0].slots)
    strip_height = 0.8 + 0.35 * num_slots
    figure = Figure(figsize=(11, strip_height * len(episodes) + 3.2), layout="constrained")
    axes = figure.subplots(
        len(episodes) + 1, 1, sharex=True, height_ratios=[strip_height] * len(episodes) + [3.0], squeeze=False
    )[:, 0]
    colours = [POLICY_COLOURS[i % len(POLICY_COLOURS)] for i in range(len(episodes))]
    for ax, episode, colour in zip(axes[:-1], episodes, colours, strict=True):
        _timeline(ax, episode, colour)
    _accuracies(axes[-1], episodes, colours)
    figure.legend(handles=_legend_handles(episodes), loc="outside right upper", fontsize="small", title="stage / event")
    figure.suptitle(title)
    return figure


def _timeline(ax: Axes, episode: PolicyEpisode, colour: str) -> None:
    steps = episode.trace.steps
    slot_ids = [slot.slot_id for slot in steps[0].slots]
    epochs = [step.epoch for step in steps]
    cells = [
        [to_rgb(STAGE_COLOURS.get(step.slots[i].stage, "#ffffff")) for step in steps] for i in range(len(slot_ids))
    ]
    ax.imshow(
        cells,
        aspect="auto",
        interpolation="nearest",
        extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(slot_ids) - 0.5, -0.5),
    )
    for i in range(len(slot_ids)):
        # Only while the slot holds a seed: a line along every empty slot's row would only clutter the strip.
        heights = [
            i + ALPHA_SPAN / 2 - ALPHA_SPAN * step.slots[i].alpha if step.slots[i].stage in SEED_STAGES else math.nan
            for step in steps
        ]
        ax.plot(epochs, heights, color="black", linewidth=1.2)
    for event in seed_events(episode.trace):
        marker, mark_colour, size, _ = EVENT_MARKS[event.kind]
        ax.plot(event.epoch, event.slot, marker=marker, color=mark_colour, markersize=size, markeredgecolor="white")
    ax.set_yticks(range(len(slot_ids)), slot_ids)
    ax.set_ylabel("slot")
    final = steps[-1]
    ax.set_title(
        f"{episode.label}: final accuracy {final.val_accuracy:.1f} %, seed params {final.seed_params:,}",
        loc="left",
        color=colour,
        fontsize="medium",
    )


def _accuracies(ax: Axes, episodes: Sequence[PolicyEpisode], colours: Sequence[str]) -> None:
    for index, (episode, colour) in enumerate(zip(episodes, colours, strict=True)):
        steps = episode.trace.steps
        style, width = POLICY_LINES[index % len(POLICY_LINES)]
        epochs, accuracies = [s.epoch for s in steps], [s.val_accuracy for s in steps]
        ax.plot(epochs, accuracies, color=colour, linestyle=style, linewidth=width, label=episode.label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def _legend_handles(episodes: Sequence[PolicyEpisode]) -> list[Patch | Line2D]:
    """The stages that occur in any strip (in lifecycle order), then the alpha line and the event marks."""
    seen = {slot.stage for e in episodes for step in e.trace.steps for slot in step.slots}
    handles: list[Patch | Line2D] = [
        Patch(facecolor=colour, edgecolor="#9ca3af", label=stage.lower())
        for stage, colour in STAGE_COLOURS.items()
        if stage in seen
    ]
    handles.append(Line2D([], [], color="black", linewidth=1.2, label="alpha (row bottom 0, top 1)"))
    handles += [
        Line2D([], [], marker=marker, color=colour, linestyle="none", markersize=size * 0.9, label=label)
        for marker, colour, size, label in EVENT_MARKS.values()
    ]
    return handles
