"""Evaluation: checkpoint vs heuristic vs no growth on the same episodes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from esper.simic.agent import PPOConfig
from esper.simic.env import EnvConfig
from esper.simic.training import EvalConfig, TrainConfig, evaluate, evaluate_heuristic, train
from esper.simic.training.evaluation import NO_GROWTH, wait_actions
from esper.tamiyo.contract import ActionMasks, LifecycleOp, SlotConfig, morphogenetic_action_space


def test_wait_actions_use_placeholders_allowed_by_the_masks() -> None:
    space = morphogenetic_action_space(SlotConfig.for_count(2))
    heads = {h: torch.ones(2, n, dtype=torch.bool) for h, n in space.sizes().items()}
    heads["slot"] = torch.tensor([[True, True], [False, True]])
    actions = wait_actions(ActionMasks(heads), space)
    assert actions["op"].tolist() == [int(LifecycleOp.WAIT)] * 2
    assert actions["slot"].tolist() == [0, 1]
    assert actions["style"].tolist() == [space.placeholders[space.head_names.index("style")]] * 2


def test_evaluate_compares_three_policies_on_the_same_seeds(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    train(make_config("run", rounds=1))
    report = evaluate(tmp_path / "run" / "checkpoint_last.pt", EvalConfig(episodes=3, num_envs=2))
    assert [row.policy for row in report.rows] == ["checkpoint (lstm)", "heuristic", NO_GROWTH]
    assert all(row.stats.num_episodes == 3 for row in report.rows)
    assert len(set(report.seeds)) == 3
    no_growth = report.rows[2].stats
    assert (no_growth.germinated, no_growth.fossilized, no_growth.params_added) == (0, 0, 0)
    data = json.loads(json.dumps(report.to_json()))
    assert data["rows"][0]["episodes"] == 3 and data["env"]["task"] == "synthetic"
    table = report.table().splitlines()
    assert table[0].startswith("policy") and len(table) == 5 and "±" in table[1]
    again = evaluate(tmp_path / "run" / "checkpoint_last.pt", EvalConfig(episodes=3, num_envs=3))
    assert [r.stats for r in again.rows] == [r.stats for r in report.rows]


def test_evaluate_heuristic_reports_one_row(tiny_env: EnvConfig) -> None:
    report = evaluate_heuristic(tiny_env, EvalConfig(episodes=2, num_envs=2, seed=5))
    assert [row.policy for row in report.rows] == ["heuristic"]
    assert report.rows[0].stats.num_episodes == 2 and report.checkpoint is None


@pytest.mark.parametrize("fields", [{"episodes": 0}, {"num_envs": 0}, {"seed": -1}])
def test_eval_config_validation(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        EvalConfig(**fields)


@pytest.mark.slow  # a training round and two evaluations of 12-epoch episodes: seconds
def test_evaluation_discounts_the_shaping_with_the_checkpoints_gamma(
    make_config: Callable[..., TrainConfig], tiny_env: EnvConfig, tmp_path: Path
) -> None:
    """Returns are comparable with training's: the checkpoint's ppo.gamma also discounts the shaping."""
    env = dataclasses.replace(tiny_env, episode_length=12)  # long enough for the heuristic to germinate
    train(make_config("run", rounds=1, env=env, ppo=PPOConfig(update_epochs=1, gamma=0.5)))
    config = EvalConfig(episodes=2, num_envs=2)
    heuristic_row = evaluate(tmp_path / "run" / "checkpoint_last.pt", config).rows[1]
    assert heuristic_row.stats.returns == evaluate_heuristic(env, config, gamma=0.5).rows[0].stats.returns
    assert heuristic_row.stats.returns != evaluate_heuristic(env, config).rows[0].stats.returns
