"""Learning curves of a run: one figure of eight panels drawn from ``metrics.jsonl``, against the round.

Top to bottom, the question each row answers: is the policy getting better (return, final
accuracy, each with the min–max band over the round's episodes), what is it doing to the hosts
(seed parameters added and seeds germinated / fossilized / pruned, per episode), how does it act
(the op mix, and the entropy of each head: 1 is uniform, 0 is decided), and is the update healthy
(approximate KL to the rollout policy, the loss terms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from esper.simic.report.run_files import column

#: Up to this many rounds every point gets a marker (a one-round run would otherwise draw nothing visible).
MARKER_LIMIT = 30
LIFECYCLE_COUNTS = ("germinated", "fossilized", "pruned")
#: Top of the y axis of the panels of shares in [0, 1]: the space above 1 holds their legend, clear of the data.
SHARE_PANEL_TOP = 1.35


def learning_curves(rounds: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """The eight-panel figure of ``rounds`` (``RoundRecord.to_json()`` dicts in round order)."""
    figure = Figure(figsize=(12, 12.5), layout="constrained")
    axes = figure.subplots(4, 2, sharex=True)
    x = column(rounds, "round")
    marker = "o" if len(rounds) <= MARKER_LIMIT else None
    _band(axes[0, 0], x, rounds, "discounted_return", "discounted return (raw reward scale)", marker)
    _band(axes[0, 1], x, rounds, "final_accuracy", "final validation accuracy (%)", marker)
    params = {"seed params": _per_episode(rounds, "params_added")}
    _lines(axes[1, 0], x, params, "seed params added per episode", marker)
    lifecycle = {name: _per_episode(rounds, name) for name in LIFECYCLE_COUNTS}
    _lines(axes[1, 1], x, lifecycle, "seeds per episode", marker)
    _op_mix(axes[2, 0], x, rounds)
    entropies = _keyed(rounds, "head_entropies")
    _lines(axes[2, 1], x, entropies, "rollout entropy per head (normalised)", marker, shares=True)
    _lines(
        axes[3, 0],
        x,
        {"approx KL": column(rounds, "update", "approx_kl")},
        "approximate KL to the rollout policy (update)",
        marker,
    )
    losses = {key: values for key, values in _keyed(rounds, "update").items() if key.endswith("_loss")}
    _lines(axes[3, 1], x, losses, "losses (mean over the update's minibatches)", marker)
    for ax in axes[-1]:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(title)
    return figure


def _band(
    ax: Axes, x: list[float], rounds: Sequence[Mapping[str, Any]], stem: str, label: str, marker: str | None
) -> None:
    """Mean of ``mean_<stem>`` with the ``min_<stem>``–``max_<stem>`` band shaded."""
    low, high = column(rounds, f"min_{stem}"), column(rounds, f"max_{stem}")
    ax.fill_between(x, low, high, alpha=0.25, linewidth=0, label="min–max over the round's episodes")
    ax.plot(x, column(rounds, f"mean_{stem}"), marker=marker, label="mean")
    ax.set_title(label)
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def _lines(
    ax: Axes,
    x: list[float],
    series: Mapping[str, list[float]],
    label: str,
    marker: str | None,
    *,
    shares: bool = False,
) -> None:
    """One line per named series; a series with no value at all is left out, and an empty panel says so.

    ``shares``: the values lie in [0, 1] and the legend goes above them (:func:`_legend_above_shares`).
    """
    drawn = {name: values for name, values in series.items() if any(not math.isnan(v) for v in values)}
    for name, values in drawn.items():
        ax.plot(x, values, marker=marker, label=name)
    ax.set_title(label)
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
    if shares:
        _legend_above_shares(ax)
    elif len(drawn) > 1:
        ax.legend(loc="best", fontsize="small", ncols=2 if len(drawn) > 3 else 1)


def _op_mix(ax: Axes, x: list[float], rounds: Sequence[Mapping[str, Any]]) -> None:
    """Share of each executed op among the round's steps, stacked (bars, so a single round shows too)."""
    counts = _keyed(rounds, "op_counts")
    totals = [math.fsum(0.0 if math.isnan(v) else v for v in step) for step in zip(*counts.values(), strict=True)]
    bottom = [0.0] * len(x)
    for op, values in counts.items():
        shares = [0.0 if math.isnan(v) or t == 0 else v / t for v, t in zip(values, totals, strict=True)]
        if any(shares):
            ax.bar(x, shares, bottom=bottom, width=0.9, label=op, linewidth=0)
            bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    ax.set_title("op mix (share of steps)")
    _legend_above_shares(ax)


def _legend_above_shares(ax: Axes) -> None:
    """Legend of a panel of shares in [0, 1], in the headroom above 1 (the data it would hide stays visible)."""
    ax.set_ylim(0, SHARE_PANEL_TOP)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", fontsize="small", ncols=4)


def _keyed(rounds: Sequence[Mapping[str, Any]], block: str) -> dict[str, list[float]]:
    """Each key of the per-round object ``block`` (in first-seen order) → its column."""
    keys = dict.fromkeys(key for record in rounds for key in (record.get(block) or {}))
    return {key: column(rounds, block, key) for key in keys}


def _per_episode(rounds: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """The per-round sum ``key`` divided by the round's episode count (the length of its ``final_accuracies``)."""
    counts = [len(record.get("final_accuracies") or ()) or math.nan for record in rounds]
    return [value / count for value, count in zip(column(rounds, key), counts, strict=True)]
