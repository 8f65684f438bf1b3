"""Typed training telemetry: one frozen record per round, the run summary, and the sink protocol.

The trainer returns diagnostics as data and hands each finished record to an injected
:class:`TrainingSink` (SB3's logger/callback seam); what is kept and where
(``metrics.jsonl``, a console line, TensorBoard) is the sink's business. The default sink does
nothing. Returns and rewards here are on the *raw* reward scale (before reward normalisation);
accuracies and objectives are in percent (accuracy points). A return is always the discounted
return ``G_0`` PPO maximises (the env's gamma, the trainer's PPO gamma).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from esper.simic.env import EpisodeSummary
from esper.simic.training.dataclass_io import to_plain


@dataclass(frozen=True, slots=True)
class PhaseTimings:
    """Wall-clock seconds one round spent in each phase."""

    env_s: float
    """Environment resets and steps (host training, validation, lifecycle, reward)."""
    policy_s: float
    """Batched ``get_action`` calls plus bootstrap ``get_value`` calls (incl. observation normalisation)."""
    update_s: float
    """PPO update (GAE, epochs, optimiser) and the observation-normaliser update; 0 for evaluation."""
    checkpoint_s: float
    """Serialising the round's checkpoint (0 when none was due); the atomic file write follows the
    round's metrics line, so that a crash between the two never leaves a checkpoint without its record."""
    total_s: float
    """Whole round, including buffer writes and bookkeeping not listed above."""

    @property
    def other_s(self) -> float:
        """Time not attributed to a named phase (buffer writes, metrics, Python overhead)."""
        return max(0.0, self.total_s - self.env_s - self.policy_s - self.update_s - self.checkpoint_s)


@dataclass(frozen=True, slots=True)
class EpisodeStats:
    """Outcome of a batch of finished episodes (one round, or an evaluation)."""

    discounted_returns: tuple[float, ...]
    """Raw-scale discounted return ``G_0`` of each episode, in env order."""
    objectives: tuple[float, ...]
    """Objective of each episode (``objective.py``: final accuracy net of parameter and compute prices)."""
    final_accuracies: tuple[float, ...]
    """Validation accuracy (%) at each episode's end."""
    reward_components: Mapping[str, tuple[float, ...]]
    """Reward component → its discounted sum in each episode (they add up to the discounted returns)."""
    germinated: int
    """Seeds germinated, summed over episodes."""
    fossilized: int
    """Seeds fossilized, summed over episodes."""
    pruned: int
    """Seeds pruned, summed over episodes."""
    rollbacks: int
    """Governor rollbacks (episodes ended early by a divergence), summed."""
    params_added: int
    """Seed parameters in the host at episode end (live and fossilized), summed over episodes."""
    extra_compute: float
    """Seed training compute (host-epochs, ``objective.py``), summed over episodes."""

    def __post_init__(self) -> None:
        counts = {len(self.discounted_returns), len(self.objectives), len(self.final_accuracies)}
        counts |= {len(values) for values in self.reward_components.values()}
        if counts != {len(self.discounted_returns)} or not self.discounted_returns:
            raise ValueError(
                "need one discounted return, objective, final accuracy and value of each reward component per "
                f"episode, got {len(self.discounted_returns)}, {len(self.objectives)}, {len(self.final_accuracies)} "
                f"and {_lengths(self.reward_components)}"
            )

    @classmethod
    def from_episodes(cls, episodes: Sequence[EpisodeSummary]) -> EpisodeStats:
        """From the envs' end-of-episode summaries (in env order)."""
        components = episodes[0].reward_components if episodes else {}
        return cls(
            discounted_returns=tuple(e.discounted_return for e in episodes),
            objectives=tuple(e.objective for e in episodes),
            final_accuracies=tuple(e.final_accuracy for e in episodes),
            reward_components={name: tuple(e.reward_components[name] for e in episodes) for name in components},
            germinated=sum(e.germinated for e in episodes),
            fossilized=sum(e.fossilized for e in episodes),
            pruned=sum(e.pruned for e in episodes),
            rollbacks=sum(e.rollbacks for e in episodes),
            params_added=sum(e.seed_params for e in episodes),
            extra_compute=math.fsum(e.extra_compute for e in episodes),
        )

    @property
    def num_episodes(self) -> int:
        return len(self.discounted_returns)

    @property
    def mean_discounted_return(self) -> float:
        return _mean(self.discounted_returns)

    @property
    def mean_objective(self) -> float:
        return _mean(self.objectives)

    @property
    def mean_reward_components(self) -> dict[str, float]:
        """Reward component → mean over episodes of its discounted sum."""
        return {name: _mean(values) for name, values in self.reward_components.items()}

    @property
    def mean_final_accuracy(self) -> float:
        return _mean(self.final_accuracies)

    @property
    def std_final_accuracy(self) -> float:
        """Population standard deviation of the final accuracies (0 for one episode)."""
        mean = self.mean_final_accuracy
        return math.sqrt(math.fsum((a - mean) ** 2 for a in self.final_accuracies) / len(self.final_accuracies))


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """Everything logged about one training round (one line of ``metrics.jsonl``)."""

    round: int
    """1-based index of the round just completed."""
    episodes: int
    """Episodes completed in the run so far (``round * num_envs``)."""
    env_steps: int
    """Transitions collected this round (RL steps over all envs)."""
    episode_stats: EpisodeStats
    """Returns, final accuracies and lifecycle counts of this round's episodes."""
    invalid_actions: int
    """Sampled actions the env executed as WAIT because they were invalid."""
    op_counts: Mapping[str, int]
    """Executed op name → count over this round's transitions."""
    head_entropies: Mapping[str, float | None]
    """Mean normalised rollout entropy per head over steps where the head was relevant (None if never)."""
    update: Mapping[str, Any]
    """Scalar diagnostics of the PPO update (losses, approx_kl, clip fraction, ...), as returned by the agent."""
    timings: PhaseTimings
    """Seconds per phase."""

    def to_json(self) -> dict[str, Any]:
        """A flat-ish JSON object: the summary statistics first, then the detailed blocks."""
        stats = self.episode_stats
        return {
            "round": self.round,
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "mean_objective": stats.mean_objective,
            "min_objective": min(stats.objectives),
            "max_objective": max(stats.objectives),
            "mean_final_accuracy": stats.mean_final_accuracy,
            "min_final_accuracy": min(stats.final_accuracies),
            "max_final_accuracy": max(stats.final_accuracies),
            "mean_discounted_return": stats.mean_discounted_return,
            "min_discounted_return": min(stats.discounted_returns),
            "max_discounted_return": max(stats.discounted_returns),
            "mean_reward_components": stats.mean_reward_components,
            "objectives": list(stats.objectives),
            "final_accuracies": list(stats.final_accuracies),
            "discounted_returns": list(stats.discounted_returns),
            "germinated": stats.germinated,
            "fossilized": stats.fossilized,
            "pruned": stats.pruned,
            "rollbacks": stats.rollbacks,
            "params_added": stats.params_added,
            "extra_compute": stats.extra_compute,
            "invalid_actions": self.invalid_actions,
            "op_counts": dict(self.op_counts),
            "head_entropies": dict(self.head_entropies),
            "update": to_plain(self.update),
            "timings": {**to_plain(self.timings), "other_s": self.timings.other_s},
        }


@dataclass(frozen=True, slots=True)
class RunStart:
    """Handed to sinks before the first round of a run (or of a resumed run)."""

    config: Mapping[str, Any]
    """The resolved run configuration (``TrainConfig.to_dict()``)."""
    start_round: int
    """Rounds already completed (0 for a fresh run; the checkpoint's count when resuming)."""
    total_rounds: int
    """Round count the run stops at."""
    num_envs: int
    """Episodes per round."""
    notices: tuple[str, ...] = ()
    """One-line messages for the user about how the run starts (an interrupted attempt restarted,
    stale temporary files removed, a resume that is not bit-identical)."""
    env_steps: int = 0
    """Env steps (transitions over all envs) collected before this invocation: 0 for a fresh run, the
    checkpoint's count when resuming (a sink stepping by env steps continues from it)."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """End-of-run summary (``summary.json``): the whole run, every invocation of it included."""

    rounds_completed: int
    """Rounds completed in the run, resumed parts included."""
    episodes_completed: int
    """Episodes completed in the run, resumed parts included."""
    wall_time_s: float
    """Seconds this invocation took, setup included (a resumed run counts only its own part)."""
    train_time_s: float
    """Seconds the run's rounds took, summed over every invocation (each round's ``timings.total_s``;
    setup, and rounds redone after a crash, are not counted)."""
    final_mean_objective: float | None
    """Mean objective of the run's last round (None if no round is recorded)."""
    final_mean_discounted_return: float | None
    """Mean raw discounted return of the run's last round."""
    final_mean_accuracy: float | None
    """Mean final accuracy (%) of the run's last round."""
    best_mean_accuracy: float | None
    """Best per-round mean final accuracy (%) over all rounds of the run."""
    best_round: int | None
    """The (first) round that reached ``best_mean_accuracy``."""
    checkpoint: str | None
    """Path of the checkpoint holding the run's final state (None without a run directory)."""

    @classmethod
    def from_rounds(
        cls,
        rows: Sequence[Mapping[str, Any]],
        *,
        rounds_completed: int,
        episodes_completed: int,
        wall_time_s: float,
        checkpoint: str | None,
    ) -> RunSummary:
        """Summary of a run whose rounds are ``rows`` (``RoundRecord.to_json()`` dicts, as in
        ``metrics.jsonl``, in round order); a missing or non-finite value counts as no value."""
        accuracies = [(_number(row.get("mean_final_accuracy")), int(row["round"])) for row in rows]
        best = max(((a, r) for a, r in accuracies if a is not None), key=lambda pair: pair[0], default=None)
        last = rows[-1] if rows else {}
        return cls(
            rounds_completed=rounds_completed,
            episodes_completed=episodes_completed,
            wall_time_s=wall_time_s,
            train_time_s=math.fsum(_number(row.get("timings", {}).get("total_s")) or 0.0 for row in rows),
            final_mean_objective=_number(last.get("mean_objective")),
            final_mean_discounted_return=_number(last.get("mean_discounted_return")),
            final_mean_accuracy=_number(last.get("mean_final_accuracy")),
            best_mean_accuracy=None if best is None else best[0],
            best_round=None if best is None else best[1],
            checkpoint=checkpoint,
        )

    def to_json(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


def _lengths(columns: Mapping[str, Sequence[float]]) -> dict[str, int]:
    return {name: len(values) for name, values in columns.items()}


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (JSON ``null``, NaN, a missing field)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@runtime_checkable
class TrainingSink(Protocol):
    """Observer of a training run; receives typed events, never the trainer's internals."""

    def on_run_start(self, start: RunStart) -> None:
        """Called once before the first round of this invocation."""
        ...

    def on_round(self, record: RoundRecord) -> None:
        """Called after each round, before that round's checkpoint (if one is due) is written to disk."""
        ...

    def on_run_end(self, summary: RunSummary) -> None:
        """Called once after the last round."""
        ...


class NullSink:
    """The default sink: ignores every event."""

    def on_run_start(self, start: RunStart) -> None:
        del start

    def on_round(self, record: RoundRecord) -> None:
        del record

    def on_run_end(self, summary: RunSummary) -> None:
        del summary


class RecordingSink(NullSink):
    """Keeps every round's record in memory (benchmarks, notebooks, tests)."""

    def __init__(self) -> None:
        self.records: list[RoundRecord] = []

    def on_round(self, record: RoundRecord) -> None:
        self.records.append(record)


class FanOutSink:
    """Forwards every event to each of ``sinks`` in order."""

    def __init__(self, *sinks: TrainingSink) -> None:
        self.sinks = sinks

    def on_run_start(self, start: RunStart) -> None:
        for sink in self.sinks:
            sink.on_run_start(start)

    def on_round(self, record: RoundRecord) -> None:
        for sink in self.sinks:
            sink.on_round(record)

    def on_run_end(self, summary: RunSummary) -> None:
        for sink in self.sinks:
            sink.on_run_end(summary)
