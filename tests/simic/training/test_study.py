"""``esper-train study``: the paired bootstrap statistics, the report, and a resumable end-to-end study."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esper.simic import cli
from esper.simic.training import EvalConfig, RunSummary, TrainConfig
from esper.simic.training import evaluation as evaluation_module
from esper.simic.training import study as study_module
from esper.simic.training import vectorized as vectorized_module
from esper.simic.training.eval_report import EvalReport
from esper.simic.training.evaluation import HEURISTIC, NO_GROWTH, RANDOM, STOCHASTIC_SUFFIX
from esper.simic.training.metrics import RunStart
from esper.simic.training.run_dir import RunDirectory, RunDirectoryError
from esper.simic.training.study import (
    Interval,
    RowValues,
    SeedEvaluation,
    StudyConfig,
    bootstrap_mean_interval,
    consecutive_seeds,
    run_study,
    summarize,
)


def values(policy: str, objective: float, **others: float) -> RowValues:
    fields = {"final_accuracy": 0.0, "params_added": 0.0, "extra_compute": 0.0, "discounted_return": 0.0}
    return RowValues(policy=policy, objective=objective, **{**fields, **others})


def study_config(tmp_path: Path, seeds: tuple[int, ...] = (1, 2)) -> StudyConfig:
    return StudyConfig(TrainConfig(), seeds, str(tmp_path), resamples=1000)


# ------------------------------------------------------------------------------------ statistics
def test_bootstrap_of_two_values_has_the_extreme_means_as_its_95_percent_bounds() -> None:
    """Resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and
    97.5% quantiles are the extremes."""
    assert bootstrap_mean_interval([0.0, 1.0]) == Interval(0.0, 1.0)


def test_bootstrap_of_a_constant_is_that_constant() -> None:
    assert bootstrap_mean_interval([1.5, 1.5, 1.5]) == Interval(1.5, 1.5)


def test_bootstrap_excludes_zero_for_a_clear_difference_and_not_for_noise() -> None:
    clear = bootstrap_mean_interval([2.0, 2.5, 1.8, 2.2, 2.1])
    assert clear.excludes_zero and 1.8 <= clear.low < clear.high <= 2.5
    noise = bootstrap_mean_interval([1.0, -1.2, 0.5, -0.4, 0.2])
    assert not noise.excludes_zero and noise.low < 0.0 < noise.high
    assert bootstrap_mean_interval([-3.0, -2.0, -2.5]).excludes_zero


def test_bootstrap_is_deterministic_given_its_seed() -> None:
    data = [0.3, -0.1, 0.8, 0.2, 0.5]
    assert bootstrap_mean_interval(data, seed=7) == bootstrap_mean_interval(data, seed=7)
    # few resamples: with 10,000, both seeds land on the same of the few possible quantiles
    assert bootstrap_mean_interval(data, seed=7, resamples=200) != bootstrap_mean_interval(data, seed=8, resamples=200)
    narrow = bootstrap_mean_interval(data, confidence=0.5)
    wide = bootstrap_mean_interval(data, confidence=0.99)
    assert wide.low <= narrow.low <= narrow.high <= wide.high
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_mean_interval([])


def test_summarize_pairs_rows_by_seed_and_compares_the_learned_row_with_every_other(tmp_path: Path) -> None:
    evaluations = [
        SeedEvaluation(
            1,
            1,
            (
                values("no growth", 70.0, final_accuracy=70.0),
                values("learned (deterministic)", 75.0, final_accuracy=76.0, params_added=1000.0),
                values("fixed schedule (best: MLP)", 74.0),
            ),
        ),
        SeedEvaluation(
            2,
            1,
            (
                values("no growth", 71.0, final_accuracy=71.0),
                values("learned (deterministic)", 74.0, final_accuracy=75.0, params_added=2000.0),
                values("fixed schedule (best: MLP_SMALL)", 76.0),
            ),
        ),
    ]
    report = summarize(evaluations, study_config(tmp_path))
    assert report.learned == "learned (deterministic)"
    assert [row.policy for row in report.rows] == [
        "no growth",
        "learned (deterministic)",
        "fixed schedule (varies by seed)",
    ]
    learned_mean = report.rows[1].mean
    assert (learned_mean.objective, learned_mean.final_accuracy, learned_mean.params_added) == (74.5, 75.5, 1500.0)
    by_baseline = {c.baseline: c for c in report.comparisons}
    assert set(by_baseline) == {"no growth", "fixed schedule (varies by seed)"}
    assert by_baseline["no growth"].differences == (5.0, 3.0) and by_baseline["no growth"].mean == 4.0
    assert by_baseline["no growth"].interval == Interval(3.0, 5.0)
    assert by_baseline["fixed schedule (varies by seed)"].differences == (1.0, -2.0)
    assert not by_baseline["fixed schedule (varies by seed)"].interval.excludes_zero
    data = report.to_json()
    assert data["comparisons"][0] == {
        "baseline": "no growth",
        "mean_difference": 4.0,
        "ci_low": 3.0,
        "ci_high": 5.0,
        "excludes_zero": True,
        "per_seed_differences": [5.0, 3.0],
    }
    assert data["rows"][2]["per_seed"][1]["policy"] == "fixed schedule (best: MLP_SMALL)"
    markdown = report.markdown()
    assert "| no growth | +4.00 | [+3.00, +5.00] | yes: learned better |" in markdown
    assert "| fixed schedule (varies by seed) | -0.50 | [-2.00, +1.00] | no |" in markdown


def test_summarize_refuses_seeds_with_different_rows(tmp_path: Path) -> None:
    two_rows = (values("checkpoint (lstm)", 1.0), values("heuristic", 0.0))
    for other in (SeedEvaluation(2, 0, two_rows[:1]), SeedEvaluation(2, 1, two_rows)):
        with pytest.raises(ValueError, match="differ in"):
            summarize([SeedEvaluation(1, 0, two_rows), other], study_config(tmp_path))


@pytest.mark.parametrize(
    ("seeds", "message"), [((3,), "at least 2 seeds"), ((3, 3), "distinct"), ((-1, 2), "distinct and >= 0")]
)
def test_study_config_validation(tmp_path: Path, seeds: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        study_config(tmp_path, seeds)


def test_consecutive_seeds_start_at_the_run_seed() -> None:
    assert consecutive_seeds(42, 3) == (42, 43, 44)
    with pytest.raises(ValueError):
        consecutive_seeds(0, 0)


def test_cli_rejects_a_one_seed_study_without_creating_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["study", "--seeds", "1", "--task", "synthetic"]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ end to end
TINY = [
    *("--task", "synthetic", "--episode-length", "4", "--synthetic-train-size", "64"),
    *("--synthetic-val-size", "32", "--batch-size", "32", "--rounds", "2", "--num-envs", "2"),
    *("--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}', "--update-epochs", "1"),
    *("--checkpoint-every", "1", "--eval-episodes", "2", "--eval-num-envs", "2", "--no-eval-costly-baselines"),
    "--quiet",
]


@pytest.mark.slow  # four tiny training runs and evaluations: seconds
def test_study_end_to_end_and_an_interrupted_study_resumes_to_the_same_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole"
    assert cli.main(["study", *TINY, "--seed-list", "3", "4", "--out", str(whole)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "| heuristic |" in out and f"wrote {whole / 'study.json'}" in out
    expected = json.loads((whole / "study.json").read_text())
    assert expected["seeds"] == [3, 4] and expected["learned"] == "checkpoint (lstm)"
    assert [c["baseline"] for c in expected["comparisons"]] == [
        f"checkpoint (lstm){STOCHASTIC_SUFFIX}",
        HEURISTIC,
        NO_GROWTH,
        RANDOM,
    ]
    assert all(len(row["per_seed"]) == 2 for row in expected["rows"])
    for seed in (3, 4):
        seed_dir = whole / f"seed-{seed}"
        assert {"checkpoint_last.pt", "metrics.jsonl", "eval.json", "traces.jsonl"} <= {
            p.name for p in seed_dir.iterdir()
        }
        assert json.loads((seed_dir / "config.json").read_text())["seed"] == seed
    assert (whole / "study.md").read_text().startswith("# Study: 2 training seeds (3, 4)")

    # interrupted in the second round of the second seed (its first round is checkpointed)
    interrupted = tmp_path / "interrupted"
    real_train = study_module.train

    class Interrupt(RuntimeError):
        pass

    class InterruptSecondRound:
        def on_run_start(self, start: Any) -> None:
            pass

        def on_round(self, record: Any) -> None:
            if record.round == 2:
                raise Interrupt

        def on_run_end(self, summary: RunSummary) -> None:
            pass

    def train_until_interrupted(config: TrainConfig, **kwargs: Any) -> Any:
        if config.seed == 4:
            kwargs["sink"] = InterruptSecondRound()
        return real_train(config, **kwargs)

    monkeypatch.setattr(study_module, "train", train_until_interrupted)
    with pytest.raises(Interrupt):
        cli.main(["study", *TINY, "--seed-list", "3", "4", "--out", str(interrupted)])
    assert (interrupted / "seed-3" / "eval.json").is_file()
    assert not (interrupted / "seed-4" / "eval.json").exists()
    assert json.loads((interrupted / "seed-4" / "metrics.jsonl").read_text().splitlines()[-1])["round"] == 2
    assert not (interrupted / "study.json").exists()
    monkeypatch.setattr(study_module, "train", real_train)

    evaluated: list[int] = []
    real_evaluate = study_module.evaluate

    def counting_evaluate(checkpoint: Path, config: EvalConfig, **kwargs: Any) -> Any:
        evaluated.append(int(Path(checkpoint).parent.name.removeprefix("seed-")))
        return real_evaluate(checkpoint, config, **kwargs)

    monkeypatch.setattr(study_module, "evaluate", counting_evaluate)
    capsys.readouterr()
    assert cli.main(["study", *TINY, "--seed-list", "3", "4", "--out", str(interrupted)]) == 0
    assert evaluated == [4]  # seed 3 was done: neither trained nor evaluated again
    assert "seed 3: already evaluated" in capsys.readouterr().out
    assert json.loads((interrupted / "study.json").read_text()) == expected
    for seed in (3, 4):
        rows = [(whole / f"seed-{seed}" / "metrics.jsonl"), (interrupted / f"seed-{seed}" / "metrics.jsonl")]
        without_timings: list[list[dict[str, Any]]] = [
            [{k: v for k, v in json.loads(line).items() if k != "timings"} for line in p.read_text().splitlines()]
            for p in rows
        ]
        assert without_timings[0] == without_timings[1]


@pytest.mark.slow  # four tiny training runs and evaluations with the fixed schedules: seconds
def test_a_study_plays_the_policy_independent_rows_once_and_reports_what_separate_evaluations_do(
    tmp_path: Path, make_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    played: list[EvalConfig] = []
    real_baseline_rows = evaluation_module.baseline_rows

    def counting_baseline_rows(pool: Any, config: EvalConfig) -> Any:
        played.append(config)
        return real_baseline_rows(pool, config)

    monkeypatch.setattr(evaluation_module, "baseline_rows", counting_baseline_rows)

    def study(out: str) -> StudyConfig:
        return StudyConfig(
            make_config(None, rounds=1), (1, 2), str(tmp_path / out), EvalConfig(episodes=2, num_envs=2), resamples=100
        )

    shared = study("shared")
    run_study(shared)
    assert len(played) == 1
    run_study(shared)  # every seed finished and evaluated: nothing is played
    assert len(played) == 1
    monkeypatch.setattr(study_module.SharedBaselines, "for_checkpoint", lambda self, checkpoint: None)
    separate = study("separate")
    run_study(separate)
    assert len(played) == 3  # each seed's evaluate played its own
    assert (tmp_path / "shared" / "study.json").read_text() == (tmp_path / "separate" / "study.json").read_text()
    for seed in (1, 2):
        reports = [json.loads((c.seed_dir(seed) / "eval.json").read_text()) for c in (shared, separate)]
        checkpoints = [str(c.seed_dir(seed) / "checkpoint_last.pt") for c in (shared, separate)]
        assert [r.pop("checkpoint") for r in reports] == checkpoints
        assert reports[0] == reports[1] and len(reports[0]["fixed_schedules"]) == 6
        traces = [(c.seed_dir(seed) / "traces.jsonl").read_text() for c in (shared, separate)]
        assert traces[0] == traces[1]


def test_run_study_from_python_writes_the_report(
    tmp_path: Path, make_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library entry point without training: every seed's training and evaluation stubbed."""
    trained: list[tuple[int, str]] = []
    shared: list[Any] = []

    class Result:
        def __init__(self, config: TrainConfig) -> None:
            self.checkpoint = Path(config.out_dir or "") / "checkpoint_last.pt"
            self.rounds_completed = config.total_rounds

    def fake_train(config: TrainConfig, *, resume: str, sink: Any) -> Result:
        trained.append((config.seed, resume))
        return Result(config)

    def fake_evaluate_seed(
        config: StudyConfig, seed: int, checkpoint: Path, rounds: int, notify: Any, baselines: Any
    ) -> Any:
        assert checkpoint == tmp_path / "s" / f"seed-{seed}" / "checkpoint_last.pt" and rounds == 2
        shared.append(baselines)
        return SeedEvaluation(seed, 0, (values("checkpoint (lstm)", 80.0 + seed), values("no-growth (WAIT)", 70.0)))

    monkeypatch.setattr(study_module, "train", fake_train)
    monkeypatch.setattr(study_module, "evaluate_seed", fake_evaluate_seed)
    config = StudyConfig(make_config(None), (1, 2, 3), str(tmp_path / "s"), resamples=100)
    report = run_study(config)
    assert trained == [(1, "auto"), (2, "auto"), (3, "auto")]
    assert len(shared) == 3 and len({id(b) for b in shared}) == 1  # one set of baseline rows for every seed
    assert report.comparisons[0].differences == (11.0, 12.0, 13.0)
    assert json.loads((tmp_path / "s" / "study.json").read_text())["comparisons"][0]["mean_difference"] == 12.0
    assert "| no-growth (WAIT) | +12.00 |" in (tmp_path / "s" / "study.md").read_text()


def test_a_seeds_eval_json_is_reused_only_for_the_same_rounds_and_evaluation(tmp_path: Path) -> None:
    evaluation = SeedEvaluation(5, 0, (values("checkpoint (lstm)", 80.0), values("heuristic", 75.0)))
    eval_config = {"episodes": 2, "seed": 9}
    path = tmp_path / "eval.json"
    study_part = {"rounds_completed": 3, "eval_config": eval_config, "evaluation": evaluation.to_json()}
    path.write_text(json.dumps({"rows": [], "study": study_part}))
    assert study_module._stored_evaluation(path, 3, eval_config) == evaluation
    assert study_module._stored_evaluation(path, 4, eval_config) is None  # trained further since
    assert study_module._stored_evaluation(path, 3, {**eval_config, "episodes": 4}) is None
    assert study_module._stored_evaluation(tmp_path / "missing.json", 3, eval_config) is None
    path.write_text(json.dumps({"rows": []}))  # an `esper-train eval` report, not a study's
    assert study_module._stored_evaluation(path, 3, eval_config) is None


def test_a_seed_evaluation_needs_the_learned_row() -> None:
    report = EvalReport((), (1, 2), {}, "ckpt.pt", reference=None)
    with pytest.raises(ValueError, match="no learned policy row"):
        SeedEvaluation.from_report(7, report)


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '"done"',
        "{not json",
        '{"study": []}',
        '{"study": {"rounds_completed": 3, "eval_config": {"episodes": 2}, "evaluation": []}}',
        '{"study": {"rounds_completed": 3, "eval_config": {"episodes": 2}, "evaluation": {"seed": 5, "learned": 0, '
        '"rows": [{"policy": "heuristic", "objective": "high", "final_accuracy": 0, "params_added": 0, '
        '"extra_compute": 0, "discounted_return": 0}]}}}',
    ],
)
def test_a_malformed_eval_json_is_evaluated_again(
    text: str, tmp_path: Path, make_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval.json is only a cache of the seed's evaluation: unusable content means "not evaluated yet"."""
    (tmp_path / "eval.json").write_text(text)
    assert study_module._stored_evaluation(tmp_path / "eval.json", 3, {"episodes": 2}) is None
    config = StudyConfig(make_config(None), (5, 6), str(tmp_path / "s"), EvalConfig(episodes=2), resamples=10)
    config.seed_dir(5).mkdir(parents=True)
    (config.seed_dir(5) / "eval.json").write_text(text)

    class Evaluated(Exception):
        pass

    def evaluate(checkpoint: Path, eval_config: EvalConfig, **kwargs: Any) -> Any:
        raise Evaluated(str(checkpoint))

    monkeypatch.setattr(study_module, "evaluate", evaluate)
    checkpoint = config.seed_dir(5) / "checkpoint_last.pt"
    with pytest.raises(Evaluated, match=r"checkpoint_last\.pt"):
        study_module.evaluate_seed(config, 5, checkpoint, 3, notify=lambda message: None)


def _seed_dir_taken_by_another_study(config: StudyConfig, seed: int) -> RunDirectory:
    """``seed``'s run directory as a concurrent study holds it while training: locked, its config written."""
    run_dir = RunDirectory(config.seed_dir(seed))
    run_dir.open(config.seed_config(seed).to_dict(), start_round=0)
    run_dir.on_run_start(RunStart(config.seed_config(seed).to_dict(), 0, 2, 2))
    return run_dir


def test_two_studies_on_one_out_directory_get_advice_that_works_for_study(
    tmp_path: Path, make_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second study used to be told to pass --resume, which study does not take."""
    config = StudyConfig(make_config(None), (5, 6), str(tmp_path / "s"), EvalConfig(episodes=2), resamples=10)
    other = _seed_dir_taken_by_another_study(config, 5)
    advice = "run this study again with the same --out: it continues each seed from its latest checkpoint"
    # the other study still runs seed 5: its lock is held
    with pytest.raises(RunDirectoryError, match="another study or run is using it") as info:
        run_study(config)
    assert advice in str(info.value) and "--resume" not in str(info.value)
    other.last_checkpoint.write_bytes(b"a checkpoint")
    other.close()
    # the other study wrote the checkpoint after this one looked for it (and found none)
    monkeypatch.setattr(vectorized_module, "resolve_resume", lambda resume, out_dir: None)
    with pytest.raises(RunDirectoryError, match="another study or run wrote it") as info:
        run_study(config)
    assert advice in str(info.value) and "--resume" not in str(info.value)
    assert str(config.seed_dir(5)) in str(info.value) and "\n" not in str(info.value)
