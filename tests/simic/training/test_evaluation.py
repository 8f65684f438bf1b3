"""Evaluation: the checkpoint's policy (greedy and sampled) vs the baselines on the same episodes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from esper.simic.agent import ObservationNormalizer, PPOConfig
from esper.simic.env import EnvConfig
from esper.simic.training import EvalConfig, TrainConfig, evaluate, evaluate_heuristic, train
from esper.simic.training.baselines import wait_actions
from esper.simic.training.evaluation import (
    NO_GROWTH,
    OPEN_LOOP,
    RANDOM,
    STATIC,
    WIDENED,
    VectorEnvPool,
    checkpoint_baselines,
    learned_rows,
    play_episodes,
)
from esper.simic.training.rollout import ActFn, PolicyActor
from esper.tamiyo.contract import ActionMasks, LifecycleOp, SlotConfig, morphogenetic_action_space
from esper.tamiyo.policy import create_policy

CHEAP_ROWS = ["checkpoint (lstm)", "checkpoint (lstm), sampled", "heuristic", NO_GROWTH, RANDOM]


def test_wait_actions_use_placeholders_allowed_by_the_masks() -> None:
    space = morphogenetic_action_space(SlotConfig.for_count(2))
    heads = {h: torch.ones(2, n, dtype=torch.bool) for h, n in space.sizes().items()}
    heads["slot"] = torch.tensor([[True, True], [False, True]])
    actions = wait_actions(ActionMasks(heads), space)
    assert actions["op"].tolist() == [int(LifecycleOp.WAIT)] * 2
    assert actions["slot"].tolist() == [0, 1]
    assert actions["style"].tolist() == [space.placeholders[space.head_names.index("style")]] * 2


def test_evaluate_compares_the_policy_with_the_cheap_baselines_on_the_same_seeds(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    train(make_config("run", rounds=1))
    checkpoint = tmp_path / "run" / "checkpoint_last.pt"
    report = evaluate(checkpoint, EvalConfig(episodes=3, num_envs=2, costly_baselines=False))
    assert [row.policy for row in report.rows] == CHEAP_ROWS and report.fixed_schedules == ()
    assert all(row.stats.num_episodes == 3 for row in report.rows)
    assert len(set(report.seeds)) == 3
    no_growth = report.row(NO_GROWTH)
    assert (no_growth.stats.germinated, no_growth.stats.fossilized, no_growth.params_added) == (0, 0, (0, 0, 0))
    assert report.reference == "checkpoint (lstm)"
    assert report.learned_advantage()["checkpoint (lstm)"] == (0.0, 0.0, 0.0)
    data = json.loads(json.dumps(report.to_json()))
    assert data["rows"][0]["episodes"] == 3 and data["env"]["task"] == "synthetic"
    assert data["rows"][3]["learned_minus_row_objective"] == pytest.approx(
        data["rows"][0]["mean_objective"] - data["rows"][3]["mean_objective"]
    )
    table = report.table().splitlines()
    assert table[0].startswith("policy") and len(table) == 7 and "±" in table[1]
    assert table[0].endswith("learned − row") and table[1].endswith("+0.00")
    # The return ranks the rows as the objective does: every row starts from the same host, so each
    # episode's discounted return is γ^(T−1)·objective − o_0 with the same o_0 in every row.
    scale = make_config().ppo.gamma ** (make_config().env.episode_length - 1)
    for row in report.rows:
        for episode, learned in zip(row.episodes, report.row(report.reference or "").episodes, strict=True):
            assert episode.discounted_return - learned.discounted_return == pytest.approx(
                scale * (episode.objective - learned.objective), abs=1e-9
            )
    by_return = sorted(report.rows, key=lambda r: r.stats.mean_discounted_return)
    by_objective = sorted(report.rows, key=lambda r: r.stats.mean_objective)
    assert [r.stats.mean_objective for r in by_return] == [r.stats.mean_objective for r in by_objective]
    again = evaluate(checkpoint, EvalConfig(episodes=3, num_envs=3, costly_baselines=False))
    greedy_and_rules = [0, 2, 3, 4]  # the sampled row draws from one generator per batch: batching matters
    assert [again.rows[i].episodes for i in greedy_and_rules] == [report.rows[i].episodes for i in greedy_and_rules]


@pytest.mark.slow  # six fixed schedules, the static and the widened baseline after a training round: seconds
def test_evaluate_with_the_costly_baselines(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    train(make_config("run", rounds=1))
    report = evaluate(tmp_path / "run" / "checkpoint_last.pt", EvalConfig(episodes=2, num_envs=2))
    names = [row.policy for row in report.rows]
    assert names[:5] == CHEAP_ROWS and names[6:] == [OPEN_LOOP, STATIC, WIDENED]
    assert names[5].startswith("fixed schedule (best: ") and len(report.fixed_schedules) == 6
    learned, static = report.rows[0], report.row(STATIC)
    assert [e.seed_params for e in static.episodes] == [e.seed_params for e in learned.episodes]
    data = report.to_json()
    assert len(data["fixed_schedules"]) == 6 and len(report.table().splitlines()) == 11


@pytest.mark.parametrize("costly", [False, pytest.param(True, marks=pytest.mark.slow)])  # six fixed schedules
def test_baseline_rows_played_for_one_checkpoint_give_another_its_fresh_report(
    make_config: Callable[..., TrainConfig], tmp_path: Path, costly: bool
) -> None:
    """Every row plays from the episode seeds and its own generators, never from the global RNG the
    rows before it (or rebuilding a policy) consumed: rows played alone for checkpoint A, reused for
    checkpoint B, give exactly B's fresh report."""
    for name, seed in (("a", 1), ("b", 2)):
        train(make_config(name, rounds=1, seed=seed))
    a, b = tmp_path / "a" / "checkpoint_last.pt", tmp_path / "b" / "checkpoint_last.pt"
    config = EvalConfig(episodes=3, num_envs=2, costly_baselines=costly)
    shared = checkpoint_baselines(a, config)
    fresh_a, fresh_b = evaluate(a, config), evaluate(b, config)
    assert shared.rules == fresh_a.rows[2:5] and shared.fixed_schedules == fresh_a.fixed_schedules
    assert len(shared.fixed_schedules) == (6 if costly else 0)
    assert fresh_a.rows[0].episodes != fresh_b.rows[0].episodes  # the learned rows are the checkpoints' own
    reused = evaluate(b, config, baselines=shared)
    assert reused.rows == fresh_b.rows and reused.fixed_schedules == fresh_b.fixed_schedules
    assert reused.to_json() == fresh_b.to_json()
    with pytest.raises(ValueError, match="another environment, discount or evaluation config"):
        evaluate(b, dataclasses.replace(config, seed=config.seed + 1), baselines=shared)


def test_greedy_and_sampled_rows_differ_only_by_sampling(tiny_env: EnvConfig) -> None:
    """Same policy, normaliser and episodes; the sampled row draws from a generator seeded by the config."""
    pool = VectorEnvPool(tiny_env, 2)
    venv = pool.get(2)
    policy = create_policy(
        "lstm", slot_config=venv.slot_config, feature_dim=venv.feature_dim, hidden_size=16, lstm_hidden=16
    )
    normalizer = ObservationNormalizer(venv.feature_dim)
    config = EvalConfig(episodes=2, seed=3)
    greedy, sampled = learned_rows(pool, config, "p", policy, normalizer)
    assert (greedy.policy, sampled.policy) == ("p", "p, sampled")
    seeds = config.episode_seeds()

    def actor(generator: torch.Generator | None) -> Callable[..., ActFn]:
        return lambda venv, batch: PolicyActor(
            policy, len(batch), normalizer=normalizer, generator=generator, deterministic=generator is None
        )

    assert greedy.episodes == play_episodes(pool, seeds, actor(None))
    generator = torch.Generator().manual_seed(config.sampling_seed(0))
    assert sampled.episodes == play_episodes(pool, seeds, actor(generator))
    assert learned_rows(pool, config, "p", policy, normalizer)[1].episodes == sampled.episodes
    assert sampled.episodes != greedy.episodes  # an untrained policy: sampling changes the episodes


def test_evaluate_heuristic_reports_one_row(tiny_env: EnvConfig) -> None:
    report = evaluate_heuristic(tiny_env, EvalConfig(episodes=2, num_envs=2, seed=5))
    assert [row.policy for row in report.rows] == ["heuristic"]
    assert report.rows[0].stats.num_episodes == 2 and report.checkpoint is None


@pytest.mark.parametrize("fields", [{"episodes": 0}, {"num_envs": 0}, {"seed": -1}])
def test_eval_config_validation(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        EvalConfig(**fields)


@pytest.mark.slow  # a training round and two evaluations of 12-epoch episodes: seconds
def test_evaluation_discounts_the_reward_with_the_checkpoints_gamma(
    make_config: Callable[..., TrainConfig], tiny_env: EnvConfig, tmp_path: Path
) -> None:
    """Returns are comparable with training's: the checkpoint's ppo.gamma also discounts the reward."""
    env = dataclasses.replace(tiny_env, episode_length=12)  # long enough for the heuristic to germinate
    train(make_config("run", rounds=1, env=env, ppo=PPOConfig(update_epochs=1, gamma=0.5)))
    config = EvalConfig(episodes=2, num_envs=2, costly_baselines=False)
    heuristic_row = evaluate(tmp_path / "run" / "checkpoint_last.pt", config).row("heuristic")
    returns = heuristic_row.stats.discounted_returns
    assert returns == evaluate_heuristic(env, config, gamma=0.5).rows[0].stats.discounted_returns
    assert returns != evaluate_heuristic(env, config).rows[0].stats.discounted_returns
