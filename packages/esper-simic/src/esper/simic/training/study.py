"""``esper-train study``: K training seeds of one configuration, each compared with the baselines.

One training run cannot say whether the learned policy beats a baseline: another seed may well
reverse the result. A study trains the same configuration with K seeds, evaluates each seed's
final checkpoint against the baselines on the same held-out episodes (:func:`evaluate`, so every
row of every seed plays the same reset seeds), and reports for each baseline the difference
*learned − baseline* on the stated objective (``esper.simic.env.objective``): its mean over the
seeds and a bootstrap confidence interval of that mean.
The policy-independent rows (rule baselines and fixed schedules) are the same for every seed, so
they are played once per study (:class:`BaselineRows`), for the first seed that needs an evaluation.

The statistics are paired. Seed ``s`` contributes one number per baseline: the mean, over the
evaluation episodes, of the learned policy's objective minus the baseline's on the same episodes.
The interval is the percentile bootstrap of the mean of these K numbers (``numpy``: K seeds drawn
with replacement, ``resamples`` times, from ``numpy.random.default_rng(bootstrap_seed)``). An
interval that excludes 0 says the sign of the difference holds across training seeds; with few
seeds the percentile interval is too narrow, so read it as a screen, not a proof.

Layout of the study directory: ``seed-<s>/`` per seed (a run directory, plus the seed's
``eval.json`` and ``traces.jsonl``), then ``study.json`` and ``study.md``. Seeds run one after
another and a study resumes where it stopped: each seed's training continues its latest checkpoint
(``resume="auto"``; a finished one trains nothing), and a seed whose ``eval.json`` matches its
checkpoint's rounds and the evaluation config is not evaluated again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esper.simic.training.atomic import write_atomic
from esper.simic.training.config import TrainConfig
from esper.simic.training.dataclass_io import to_plain
from esper.simic.training.eval_report import EvalReport, EvalRow
from esper.simic.training.evaluation import BaselineRows, EvalConfig, checkpoint_baselines, evaluate
from esper.simic.training.metrics import TrainingSink
from esper.simic.training.run_dir import (
    RESUME_AUTO,
    RunDirectoryBusyError,
    RunDirectoryError,
    RunDirectoryStartedError,
    strict_json,
)
from esper.simic.training.traces import TRACES_FILE, write_traces
from esper.simic.training.vectorized import RunResult, train

DEFAULT_SEEDS = 5
"""Training seeds of a study when neither a count nor a list is given."""
EVAL_FILE = "eval.json"
"""A seed's evaluation report in its directory; its presence (matching the checkpoint) marks the seed done."""
STUDY_JSON = "study.json"
STUDY_MARKDOWN = "study.md"


@dataclass(frozen=True, slots=True)
class StudyConfig:
    """One configuration trained with several seeds, each evaluated the same way."""

    train: TrainConfig
    """The run every seed trains; its ``seed`` and ``out_dir`` are replaced per seed."""
    seeds: tuple[int, ...]
    """Training seeds, in the order they run (at least 2, distinct)."""
    out_dir: str
    """Study directory: ``seed-<s>/`` per seed, ``study.json`` and ``study.md``."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    """How each seed's checkpoint is evaluated (the same episodes for every seed)."""
    confidence: float = 0.95
    """Coverage of the bootstrap interval of each learned − baseline difference."""
    resamples: int = 10_000
    """Bootstrap resamples of the seeds."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap's ``numpy`` generator (the same interval every time for the same numbers)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if len(self.seeds) < 2:
            raise ValueError(f"a study needs at least 2 seeds to estimate an interval, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"study seeds must be distinct and >= 0, got {list(self.seeds)}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {self.resamples}")

    def seed_dir(self, seed: int) -> Path:
        return Path(self.out_dir) / f"seed-{seed}"

    def seed_config(self, seed: int) -> TrainConfig:
        """The training run of ``seed``: the study's run with that seed, in its own directory."""
        return dataclasses.replace(self.train, seed=seed, out_dir=str(self.seed_dir(seed)))


def consecutive_seeds(first: int, count: int) -> tuple[int, ...]:
    """``first, first + 1, ..., first + count − 1`` (``esper-train study --seeds K`` from ``--seed``)."""
    if count < 1:
        raise ValueError(f"the number of seeds must be >= 1, got {count}")
    return tuple(range(first, first + count))


@dataclass(frozen=True, slots=True)
class RowValues:
    """One evaluation row of one seed: means over its episodes."""

    policy: str
    """The row's name in that seed's evaluation."""
    objective: float
    """Mean episode objective (accuracy points net of the parameter and compute prices)."""
    final_accuracy: float
    """Mean final validation accuracy (%)."""
    params_added: float
    """Mean parameters added to the host (by its seeds, or by widening it)."""
    extra_compute: float
    """Mean extra training compute (host-epochs)."""
    discounted_return: float
    """Mean discounted return (raw scale; the return PPO maximises)."""

    @classmethod
    def from_row(cls, row: EvalRow) -> RowValues:
        def mean(values: Sequence[float]) -> float:
            return math.fsum(values) / len(values)

        return cls(
            policy=row.policy,
            objective=mean(row.objectives),
            final_accuracy=mean([e.final_accuracy for e in row.episodes]),
            params_added=mean([float(p) for p in row.params_added]),
            extra_compute=mean([e.extra_compute for e in row.episodes]),
            discounted_return=mean([e.discounted_return for e in row.episodes]),
        )

    @classmethod
    def mean_of(cls, policy: str, values: Sequence[RowValues]) -> RowValues:
        """The mean of each value over ``values`` (one row across seeds)."""
        means = {
            f.name: math.fsum(getattr(v, f.name) for v in values) / len(values)
            for f in dataclasses.fields(cls)
            if f.name != "policy"
        }
        return cls(policy=policy, **means)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RowValues:
        """Inverse of :meth:`to_json`; a value that is not a number (``null``: not finite) raises."""
        numbers = {
            f.name: math.nan if data[f.name] is None else _number(data[f.name])
            for f in dataclasses.fields(cls)
            if f.name != "policy"
        }
        return cls(policy=str(data["policy"]), **numbers)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence interval ``[low, high]``."""

    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def bootstrap_mean_interval(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean of ``values``.

    Draws ``len(values)`` values with replacement ``resamples`` times from
    ``numpy.random.default_rng(seed)``, takes each draw's mean, and returns the
    ``(1 − confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means.

    Raises:
        ValueError: no values.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("a bootstrap interval needs at least one value")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(low), float(high))


@dataclass(frozen=True, slots=True)
class SeedEvaluation:
    """What a study keeps of one seed's evaluation: the values of every row, in evaluation order."""

    seed: int
    learned: int
    """Index of the learned policy's row (the evaluation's reference, its greedy row)."""
    rows: tuple[RowValues, ...]

    @classmethod
    def from_report(cls, seed: int, report: EvalReport) -> SeedEvaluation:
        """The seed's values from its evaluation report.

        Raises:
            ValueError: the report has no reference (learned policy) row.
        """
        names = [row.policy for row in report.rows]
        if report.reference is None or report.reference not in names:
            raise ValueError(f"seed {seed}'s evaluation has no learned policy row to compare with (rows: {names})")
        return cls(seed, names.index(report.reference), tuple(RowValues.from_row(row) for row in report.rows))

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "learned": self.learned, "rows": [row.to_json() for row in self.rows]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SeedEvaluation:
        return cls(int(data["seed"]), int(data["learned"]), tuple(RowValues.from_json(row) for row in data["rows"]))


@dataclass(frozen=True, slots=True)
class StudyRow:
    """One evaluation row across the seeds."""

    policy: str
    """The row's name (when the seeds named it differently, the common part and "(varies by seed)")."""
    per_seed: tuple[RowValues, ...]
    """The row's values for each seed, in the study's seed order."""

    @property
    def mean(self) -> RowValues:
        return RowValues.mean_of(self.policy, self.per_seed)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Learned − baseline on the objective, paired by seed."""

    baseline: str
    """The baseline row's name."""
    differences: tuple[float, ...]
    """Per seed: the learned row's mean objective minus the baseline's (the same episodes)."""
    interval: Interval
    """Bootstrap interval of the mean difference."""

    @property
    def mean(self) -> float:
        return math.fsum(self.differences) / len(self.differences)


@dataclass(frozen=True, slots=True)
class StudyReport:
    """The study's table: every row across seeds, and the learned row against each other row."""

    seeds: tuple[int, ...]
    learned: str
    """Name of the learned policy's row."""
    rows: tuple[StudyRow, ...]
    comparisons: tuple[Comparison, ...]
    confidence: float
    train: Mapping[str, Any]
    """The study's training config (plain, without ``out_dir``; each seed sets ``seed`` and its directory)."""
    eval: Mapping[str, Any]
    """The evaluation config (plain)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "metric": "objective",
            "learned": self.learned,
            "confidence": self.confidence,
            "comparisons": [
                {
                    "baseline": c.baseline,
                    "mean_difference": c.mean,
                    "ci_low": c.interval.low,
                    "ci_high": c.interval.high,
                    "excludes_zero": c.interval.excludes_zero,
                    "per_seed_differences": list(c.differences),
                }
                for c in self.comparisons
            ],
            "rows": [
                {
                    "policy": row.policy,
                    "mean": row.mean.to_json(),
                    "per_seed": [{"seed": s, **v.to_json()} for s, v in zip(self.seeds, row.per_seed, strict=True)],
                }
                for row in self.rows
            ],
            "train_config": dict(self.train),
            "eval_config": dict(self.eval),
        }

    def markdown(self) -> str:
        """The report as Markdown: the comparison table first, then means and per-seed objectives."""
        level = f"{self.confidence:.0%}"
        lines = [
            f"# Study: {len(self.seeds)} training seeds ({', '.join(map(str, self.seeds))})",
            "",
            f"Objective per episode: final accuracy − prices of added parameters and extra compute "
            f"(`env.objective`: {_prices(self.train)}). Every row of every seed plays the same "
            f"{self.eval.get('episodes', '?')} held-out episodes.",
            "",
            f"## {self.learned} − baseline, objective (mean over seeds, {level} bootstrap interval)",
            "",
            "| baseline | difference | interval | excludes 0 |",
            "|---|---:|---:|---|",
        ]
        for c in self.comparisons:
            verdict = "no"
            if c.interval.excludes_zero:
                verdict = "yes: learned better" if c.interval.low > 0 else "yes: baseline better"
            lines.append(
                f"| {c.baseline} | {c.mean:+.2f} | [{c.interval.low:+.2f}, {c.interval.high:+.2f}] | {verdict} |"
            )
        lines += [
            "",
            "## Mean over seeds",
            "",
            "| policy | objective | final acc % | params added | extra compute (host-epochs) | discounted return |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            m = row.mean
            lines.append(
                f"| {row.policy} | {m.objective:.2f} | {m.final_accuracy:.2f} | {m.params_added:,.0f} | "
                f"{m.extra_compute:.2f} | {m.discounted_return:+.3f} |"
            )
        lines += [
            "",
            "## Objective per seed",
            "",
            "| policy | " + " | ".join(f"seed {s}" for s in self.seeds) + " |",
            "|---|" + "---:|" * len(self.seeds),
        ]
        for row in self.rows:
            lines.append(f"| {row.policy} | " + " | ".join(f"{v.objective:.2f}" for v in row.per_seed) + " |")
        return "\n".join(lines) + "\n"


def _prices(train: Mapping[str, Any]) -> str:
    objective = train.get("env", {}).get("objective", {})
    return ", ".join(f"{key} {value}" for key, value in objective.items()) or "defaults"


def summarize(evaluations: Sequence[SeedEvaluation], config: StudyConfig) -> StudyReport:
    """The study report of the seeds' evaluations (rows are matched by their position).

    Raises:
        ValueError: the seeds' evaluations differ in their number of rows or in the learned row's position.
    """
    layouts = {(len(e.rows), e.learned) for e in evaluations}
    if len(layouts) != 1:
        raise ValueError(f"the seeds' evaluations differ in (rows, learned row index): {sorted(layouts)}")
    num_rows, learned_index = layouts.pop()
    rows = tuple(
        StudyRow(_common_name([e.rows[i].policy for e in evaluations]), tuple(e.rows[i] for e in evaluations))
        for i in range(num_rows)
    )
    learned = rows[learned_index]
    comparisons = []
    for i, row in enumerate(rows):
        if i == learned_index:
            continue
        differences = tuple(a.objective - b.objective for a, b in zip(learned.per_seed, row.per_seed, strict=True))
        interval = bootstrap_mean_interval(
            differences, confidence=config.confidence, resamples=config.resamples, seed=config.bootstrap_seed
        )
        comparisons.append(Comparison(row.policy, differences, interval))
    return StudyReport(
        seeds=tuple(e.seed for e in evaluations),
        learned=learned.policy,
        rows=rows,
        comparisons=tuple(comparisons),
        confidence=config.confidence,
        train=dataclasses.replace(config.train, out_dir=None).to_dict(),
        eval=to_plain(config.eval),
    )


def _common_name(names: Sequence[str]) -> str:
    """``names[0]`` if every seed named the row alike, else its part before `` (`` plus "(varies by seed)"."""
    if len(set(names)) == 1:
        return names[0]
    return f"{names[0].split(' (')[0]} (varies by seed)"


def _stored_evaluation(path: Path, rounds: int, eval_plain: Mapping[str, Any]) -> SeedEvaluation | None:
    """What a seed's ``eval.json`` holds for the study, if a study wrote it for this checkpoint and config.

    Anything else (no file, another checkpoint or evaluation config, unreadable or malformed content such
    as ``[]``) is None: the seed is evaluated again and the file rewritten (it is only a cache).
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stored = data.get("study") if isinstance(data, dict) else None
        if not isinstance(stored, dict) or not isinstance(stored.get("evaluation"), dict):
            return None
        if stored.get("rounds_completed") != rounds or stored.get("eval_config") != dict(eval_plain):
            return None
        return SeedEvaluation.from_json(stored["evaluation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another version


class SharedBaselines:
    """The study's :class:`BaselineRows`, played for the first checkpoint that needs them."""

    def __init__(self, config: EvalConfig, data_dir: str | None = None) -> None:
        self.config = config
        self.data_dir = data_dir  # the study's own env.data_dir: its checkpoints were trained on it
        self._rows: BaselineRows | None = None

    def for_checkpoint(self, checkpoint: Path) -> BaselineRows:
        if self._rows is None:
            self._rows = checkpoint_baselines(checkpoint, self.config, data_dir=self.data_dir)
        return self._rows


def evaluate_seed(
    config: StudyConfig,
    seed: int,
    checkpoint: Path,
    rounds: int,
    notify: Callable[[str], None],
    baselines: SharedBaselines | None = None,
) -> SeedEvaluation:
    """Evaluate ``seed``'s final checkpoint (after ``rounds`` rounds), or reuse its ``eval.json``.

    ``baselines`` (shared by the study's seeds) spares playing the policy-independent rows again.
    Writes the seed's ``traces.jsonl``, then its ``eval.json`` (the evaluation report plus what the
    study keeps of it), so an ``eval.json`` exists only for a finished evaluation.
    """
    seed_dir = config.seed_dir(seed)
    eval_plain = json.loads(strict_json(to_plain(config.eval)))  # as it reads back from eval.json
    stored = _stored_evaluation(seed_dir / EVAL_FILE, rounds, eval_plain)
    if stored is not None:
        notify(f"seed {seed}: already evaluated ({seed_dir / EVAL_FILE})")
        return stored
    notify(f"seed {seed}: evaluating {checkpoint}")
    shared = baselines.for_checkpoint(checkpoint) if baselines is not None else None
    report = evaluate(checkpoint, config.eval, data_dir=config.train.env.data_dir, baselines=shared)
    evaluation = SeedEvaluation.from_report(seed, report)
    write_traces(seed_dir / TRACES_FILE, ((row.policy, row.traces) for row in report.rows))
    study_part = {"rounds_completed": rounds, "eval_config": eval_plain, "evaluation": evaluation.to_json()}
    _write_text(seed_dir / EVAL_FILE, strict_json({**report.to_json(), "study": study_part}, indent=2) + "\n")
    return evaluation


def run_study(
    config: StudyConfig,
    *,
    sink: TrainingSink | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> StudyReport:
    """Train and evaluate every seed in turn (resuming what an earlier call left), then write the report.

    Args:
        sink: observer of each seed's training run (progress display).
        notify: receives one line per study step (which seed trains, is evaluated or is skipped).

    Raises:
        Whatever :func:`train` and :func:`evaluate` raise (a seed's config that does not match its
        existing checkpoint is a ``CheckpointError``).
    """
    evaluations, baselines = [], SharedBaselines(config.eval, config.train.env.data_dir)
    for seed in config.seeds:
        notify(f"seed {seed}: training into {config.seed_dir(seed)}")
        result = _train_seed(config, seed, sink)
        if result.checkpoint is None:
            raise RuntimeError(f"seed {seed}'s training left no checkpoint in {config.seed_dir(seed)}")
        evaluations.append(evaluate_seed(config, seed, result.checkpoint, result.rounds_completed, notify, baselines))
    report = summarize(evaluations, config)
    out = Path(config.out_dir)
    _write_text(out / STUDY_JSON, strict_json(report.to_json(), indent=2) + "\n")
    _write_text(out / STUDY_MARKDOWN, report.markdown())
    return report


def _train_seed(config: StudyConfig, seed: int, sink: TrainingSink | None) -> RunResult:
    """Train (or continue) ``seed``'s run; another process writing its directory is one study-level error.

    ``train`` words those errors for ``esper-train ppo`` (``--resume``, which ``study`` does not take).
    """
    try:
        return train(config.seed_config(seed), resume=RESUME_AUTO, sink=sink)
    except (RunDirectoryBusyError, RunDirectoryStartedError) as exc:
        what = (
            "is in use: another study or run is using it"
            if isinstance(exc, RunDirectoryBusyError)
            else f"gained {exc.checkpoint.name} while this study was starting the seed: another study or run wrote it"
        )
        raise RunDirectoryError(
            f"seed {seed}'s run directory {str(config.seed_dir(seed))!r} {what}; when it has ended, run this "
            "study again with the same --out: it continues each seed from its latest checkpoint and reuses "
            "finished evaluations (or choose another --out)"
        ) from exc


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"))
