"""A governor rollback inside training: a true terminal in the rollout, and a run that carries on.

NaN is injected the way a diverging host produces it: one host weight of one environment turns
NaN just before an epoch trains, so that epoch's loss (and validation loss) is NaN. The
environment's governor must roll back and end that episode (``terminated``, no bootstrap); the
trainer must store it as a terminal, pad the rest of the row, and keep training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from esper.simic.agent import (
    ObservationNormalizer,
    PPOAgent,
    PPOConfig,
    RewardNormalizer,
    RolloutBuffer,
    generalized_advantage_estimate,
)
from esper.simic.env import EnvConfig, MorphogeneticEnv, VectorEnv
from esper.simic.training import TrainConfig, train
from esper.simic.training.rollout import collect_rollout
from esper.tamiyo.policy import create_policy

F, T = False, True


def _poison_host_at_call(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the ``call``-th host epoch (0-based, over all envs) start from a NaN host weight.

    ``VectorEnv`` begins its environments' steps in index order, so with ``N`` envs call ``k`` is
    env ``k % N`` training its epoch ``k // N + 1``.
    """
    real_begin_step = MorphogeneticEnv.begin_step
    calls = 0

    def begin_step(env: MorphogeneticEnv, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        real_begin_step(env, *args, **kwargs)
        if calls == call:
            assert env.model is not None
            with torch.no_grad():
                next(env.model.host.parameters()).view(-1)[0] = math.nan
        calls += 1

    monkeypatch.setattr(MorphogeneticEnv, "begin_step", begin_step)


def test_a_governor_terminal_is_stored_without_bootstrap_and_padded(
    monkeypatch: pytest.MonkeyPatch, tiny_env: EnvConfig
) -> None:
    venv = VectorEnv(tiny_env, num_envs=2)
    torch.manual_seed(0)
    policy = create_policy(
        "lstm", slot_config=venv.slot_config, feature_dim=venv.feature_dim, hidden_size=16, lstm_hidden=16
    )
    buffer = RolloutBuffer.for_policy(policy, num_envs=2, num_steps=tiny_env.episode_length)
    _poison_host_at_call(monkeypatch, 2)  # env 0, epoch 2
    value_calls = 0
    real_get_value = policy.get_value

    def get_value(*args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal value_calls
        value_calls += 1
        return real_get_value(*args, **kwargs)

    monkeypatch.setattr(policy, "get_value", get_value)
    rollout = collect_rollout(
        venv,
        policy,
        buffer,
        seeds=[0, 1],
        obs_normalizer=ObservationNormalizer(venv.feature_dim),
        reward_normalizer=RewardNormalizer(2, gamma=0.99),
        generator=torch.Generator().manual_seed(0),
    )

    data = buffer.data()
    assert data.valid.tolist() == [[T, T, F, F], [T, T, T, T]]
    assert data.terminated.tolist() == [[F, T, F, F], [F, F, F, T]]  # the rollback and the last epoch
    assert not data.truncated.any()
    assert data.bootstrap_values.tolist() == [[0.0] * 4] * 2  # a true terminal is never bootstrapped
    assert value_calls == 0  # so no bootstrap value is ever asked of the critic
    assert float(data.rewards[0, 1]) < 0.0 and data.rewards[0, 2:].tolist() == [0.0, 0.0]  # penalty, then padding
    assert rollout.num_transitions == 6 and [e.rollbacks for e in rollout.episodes] == [1, 0]
    assert bool(torch.isfinite(data.obs.features).all()) and bool(torch.isfinite(rollout.raw_features).all())

    gae = generalized_advantage_estimate(
        data.rewards,
        data.values,
        data.bootstrap_values,
        data.terminated,
        data.truncated,
        data.valid,
        gamma=0.99,
        lam=0.95,
    )
    assert gae.advantages[0, 1] == data.rewards[0, 1] - data.values[0, 1]  # delta with V(s') = 0, trace cut
    metrics = PPOAgent(policy, PPOConfig(update_epochs=1)).update(buffer)
    assert metrics.num_valid_steps == 6 and metrics.gradient_steps == 2 and math.isfinite(metrics.total_loss)


def test_training_carries_on_after_a_nan_host_loss(
    monkeypatch: pytest.MonkeyPatch, make_config: Callable[..., TrainConfig]
) -> None:
    _poison_host_at_call(monkeypatch, 2)  # round 1, env 0, epoch 2
    result = train(make_config(None, rounds=2))

    first, second = result.history
    assert (first.episode_stats.rollbacks, second.episode_stats.rollbacks) == (1, 0)
    assert (first.env_steps, second.env_steps) == (6, 8)
    assert all(math.isfinite(r) for r in first.episode_stats.discounted_returns + first.episode_stats.final_accuracies)
    for record in result.history:
        assert record.update["gradient_steps"] > 0 and math.isfinite(record.update["total_loss"])
    assert all(bool(torch.isfinite(p).all()) for p in result.policy.parameters())
