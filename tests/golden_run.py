"""The golden run: a tiny fixed-seed training run and evaluation whose numbers are pinned in the repo.

A refactor must not change a single number a run produces. ``tests/test_golden.py`` replays this
run and compares its ``metrics.jsonl`` (timings aside) and its evaluation rows with
``tests/golden/golden_run.json`` exactly. When a change is *meant* to alter the numbers, regenerate
the file with ``uv run python scripts/update_golden.py`` and commit it with the change that
explains why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from esper.simic.agent import PPOConfig
from esper.simic.env import EnvConfig, LifecycleSettings
from esper.simic.training import EvalConfig, TrainConfig, evaluate, read_metrics, train

GOLDEN_FILE = Path(__file__).parent / "golden" / "golden_run.json"


def golden_config(out_dir: Path) -> TrainConfig:
    """Digits with the impaired MLP host, short episodes so seeds germinate, blend and fossilize; two
    rounds, so the second plays with the weights and normalisers of the first update."""
    return TrainConfig(
        policy="lstm",
        policy_kwargs={"hidden_size": 32, "lstm_hidden": 32},
        num_envs=2,
        rounds=2,
        seed=5,
        checkpoint_every=0,
        out_dir=str(out_dir),
        env=EnvConfig(
            task="digits",
            episode_length=10,
            lifecycle=LifecycleSettings(training_dwell=2, min_prune_age=2, embargo_epochs=1),
        ),
        ppo=PPOConfig(update_epochs=2),
    )


def produce(work_dir: Path) -> dict[str, Any]:
    """Run the golden training and evaluation in ``work_dir``; return what is pinned."""
    result = train(golden_config(work_dir / "run"))
    assert result.checkpoint is not None
    rows = read_metrics(result.checkpoint.parent / "metrics.jsonl")
    for row in rows:
        del row["timings"]
    # The costly baselines (fixed schedules, static, widened) are left out: they would triple the run's time.
    report = evaluate(result.checkpoint, EvalConfig(episodes=2, num_envs=2, seed=11, costly_baselines=False)).to_json()
    return {"metrics": rows, "eval": {"seeds": report["seeds"], "rows": report["rows"]}}


def dumps(data: dict[str, Any]) -> str:
    """The golden file's text (stable key order, one trailing newline)."""
    return json.dumps(data, indent=1, sort_keys=True) + "\n"
