"""What an evaluation reports: one row per policy over the same episodes, and the table a reviewer reads.

Rows are paired: episode ``i`` of every row was reset with the same seed, so each row's
difference to the learned policy is a paired difference (``EvalReport.learned_advantage``). Every
difference is *learned − row*, as in ``study``: positive means the learned policy did better.
Every row is measured by the same stated objective (``esper.simic.env.objective``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from esper.simic.env import EpisodeSummary
from esper.simic.training.metrics import EpisodeStats
from esper.simic.training.traces import EpisodeTrace, sequence_diversity


def _mean_std(values: tuple[float, ...]) -> tuple[float, float]:
    """Mean and population standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.pstdev(values)


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One policy's results over the evaluation episodes."""

    policy: str
    """Display name of the policy."""
    episodes: tuple[EpisodeSummary, ...]
    """The summary of every episode, in the order of the report's seeds (rows are paired by index)."""
    host_params_added: tuple[int, ...] = ()
    """Parameters the host itself gained in each episode (the widened-host baseline); empty: none."""
    traces: tuple[EpisodeTrace, ...] = ()
    """Step-by-step trace of every episode, in episode order (``traces.py``); empty: not traced."""

    def __post_init__(self) -> None:
        if self.host_params_added and len(self.host_params_added) != len(self.episodes):
            raise ValueError(
                f"host_params_added has {len(self.host_params_added)} entries for {len(self.episodes)} episodes"
            )
        if self.traces and len(self.traces) != len(self.episodes):
            raise ValueError(f"{len(self.traces)} traces for {len(self.episodes)} episodes")

    @property
    def stats(self) -> EpisodeStats:
        """Per-episode returns and accuracies plus lifecycle totals."""
        return EpisodeStats.from_episodes(self.episodes)

    @property
    def objectives(self) -> tuple[float, ...]:
        """The objective of each episode (accuracy net of the parameter and compute prices)."""
        return tuple(e.objective for e in self.episodes)

    @property
    def params_added(self) -> tuple[int, ...]:
        """Parameters each episode added to the base host: its seeds' plus the host's own growth."""
        host = self.host_params_added or (0,) * len(self.episodes)
        return tuple(e.seed_params + h for e, h in zip(self.episodes, host, strict=True))

    @property
    def mean_objective(self) -> float:
        return statistics.fmean(self.objectives)

    def to_json(self) -> dict[str, Any]:
        stats = self.stats
        n = stats.num_episodes
        mean_objective, std_objective = _mean_std(self.objectives)
        return {
            "policy": self.policy,
            "episodes": n,
            "mean_objective": mean_objective,
            "std_objective": std_objective,
            "mean_final_accuracy": stats.mean_final_accuracy,
            "std_final_accuracy": stats.std_final_accuracy,
            "mean_discounted_return": stats.mean_discounted_return,
            "mean_reward_components": dict(stats.mean_reward_components),
            "mean_params_added": statistics.fmean(self.params_added),
            "mean_extra_compute": statistics.fmean(e.extra_compute for e in self.episodes),
            "seeds_fossilized_per_episode": stats.fossilized / n,
            "objectives": list(self.objectives),
            "final_accuracies": list(stats.final_accuracies),
            "discounted_returns": list(stats.discounted_returns),
            "params_added": list(self.params_added),
            "extra_compute": [e.extra_compute for e in self.episodes],
            "final_blueprints": [dict(e.final_blueprints) for e in self.episodes],
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Rows of an evaluation plus what they were measured on."""

    rows: tuple[EvalRow, ...]
    """One row per policy, in the order evaluated; the learned policy's deterministic row first, if any."""
    seeds: tuple[int, ...]
    """Reset seeds of the episodes every row played."""
    env: Mapping[str, Any]
    """Environment config (plain dict) of the episodes."""
    checkpoint: str | None
    """Evaluated checkpoint, if any."""
    reference: str | None = None
    """Policy name of the row every other row is compared with (the learned policy); None: no comparison."""
    fixed_schedules: tuple[EvalRow, ...] = ()
    """The fixed schedule of every blueprint (the best of them is also a row)."""

    def row(self, policy: str) -> EvalRow:
        """The row named ``policy``; ``KeyError`` listing the names otherwise."""
        for row in self.rows:
            if row.policy == policy:
                return row
        raise KeyError(f"no row {policy!r}; rows are {[r.policy for r in self.rows]}")

    @property
    def sequence_diversity(self) -> dict[str, float]:
        """Per traced row: distinct action sequences / episodes (1/N: the same sequence in all N episodes)."""
        return {row.policy: sequence_diversity([t.actions for t in row.traces]) for row in self.rows if row.traces}

    def learned_advantage(self) -> dict[str, tuple[float, ...]]:
        """Per policy, the paired per-episode objective of the reference (learned) row minus that row's."""
        if self.reference is None:
            return {}
        learned = self.row(self.reference).objectives
        return {row.policy: tuple(a - b for a, b in zip(learned, row.objectives, strict=True)) for row in self.rows}

    def to_json(self) -> dict[str, Any]:
        differences = self.learned_advantage()
        rows = []
        for row in self.rows:
            data = row.to_json()
            if row.policy in differences:
                data["learned_minus_row_objective"] = statistics.fmean(differences[row.policy])
            rows.append(data)
        return {
            "checkpoint": self.checkpoint,
            "seeds": list(self.seeds),
            "env": dict(self.env),
            "reference": self.reference,
            "rows": rows,
            "fixed_schedules": [row.to_json() for row in self.fixed_schedules],
            "distinct_action_sequences_per_episode": self.sequence_diversity,
        }

    def table(self) -> str:
        """A fixed-width text table, one row per policy: objective, accuracy, costs, return, Δ to the learned policy."""
        header = (
            "policy",
            "objective (± std)",
            "final acc %",
            "params added",
            "extra compute",
            "discounted return",
            "learned − row",
        )
        differences = self.learned_advantage()
        lines = [header]
        for row, data in zip(self.rows, self.to_json()["rows"], strict=True):
            delta = f"{statistics.fmean(differences[row.policy]):+.2f}" if row.policy in differences else "-"
            lines.append(
                (
                    row.policy,
                    f"{data['mean_objective']:.2f} ± {data['std_objective']:.2f}",
                    f"{data['mean_final_accuracy']:.2f}",
                    f"{data['mean_params_added']:,.0f}",
                    f"{data['mean_extra_compute']:.2f}",
                    f"{data['mean_discounted_return']:+.3f}",
                    delta,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        table = "\n".join(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
            for line in lines
        )
        return table + self._diversity_footer()

    def _diversity_footer(self) -> str:
        shares = ", ".join(f"{policy} {share:.2f}" for policy, share in self.sequence_diversity.items())
        if not shares:
            return ""
        return (
            "\ndistinct action sequences / episodes (op + relevant heads per step; 1/N = one script "
            f"for all N episodes): {shares}"
        )
