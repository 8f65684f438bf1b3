"""The objective-based reward on hand-worked cases, and its return telescoping to the objective
(esper.simic.env.rewards)."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esper.simic.env.objective import ObjectiveConfig, objective_value
from esper.simic.env.rewards import (
    REWARD_MODES,
    ObjectiveTerms,
    RewardBreakdown,
    RewardConfig,
    RewardInputs,
    check_discount,
    compute_reward,
    objective_reward,
    objective_terms,
    sparse_reward,
)

CFG = RewardConfig()


def acc(value: float) -> ObjectiveTerms:
    """An objective made of accuracy alone (no seeds, no compute)."""
    return ObjectiveTerms(accuracy=value)


def episode_rewards(
    mode: str,
    objectives: list[ObjectiveTerms],
    gamma: float,
    *,
    episode_length: int | None = None,
    rollback: bool = False,
) -> list[RewardBreakdown]:
    """The rewards of an episode whose running objective is ``objectives`` (``o_0 .. o_n``).

    Without ``rollback`` the episode runs its whole length ``n``; with it, the governor rolls back
    on the last step (``o_n`` is then ignored) and ``episode_length`` is the full length.
    """
    steps = len(objectives) - 1
    length = episode_length if episode_length is not None else steps
    return [
        compute_reward(
            mode,
            RewardInputs(
                step=t,
                episode_length=length,
                initial=objectives[0],
                before=objectives[t],
                after=objectives[t + 1],
                governor_rollback=rollback and t == steps - 1,
            ),
            CFG,
            gamma=gamma,
        )
        for t in range(steps)
    ]


def discounted(rewards: list[float], gamma: float) -> float:
    return sum(gamma**t * r for t, r in enumerate(rewards))


def test_hand_worked_three_step_episode() -> None:
    # o = 10, 20, 16, 30 with γ = 0.5: r0 = 0.5·20 − 10 = 0, r1 = 0.5·16 − 20 = −12, r2 = 30 − 16 = 14
    # (the last step is undiscounted); G_0 = 0 − 6 + 3.5 = −2.5 = γ²·30 − 10.
    rewards = [r.total for r in episode_rewards("objective", [acc(10.0), acc(20.0), acc(16.0), acc(30.0)], 0.5)]
    assert rewards == [0.0, -12.0, 14.0]
    assert discounted(rewards, 0.5) == -2.5 == 0.5**2 * 30.0 - 10.0
    # sparse: only the last step, o_T − o_0 = 20; G_0 = γ²·20 = 5.
    sparse = [r.total for r in episode_rewards("sparse", [acc(10.0), acc(20.0), acc(16.0), acc(30.0)], 0.5)]
    assert sparse == [0.0, 0.0, 20.0] and discounted(sparse, 0.5) == 5.0


def test_components_apply_the_formula_term_by_term() -> None:
    before = ObjectiveTerms(accuracy=40.0, param_cost=-1.0, compute_cost=-0.5)
    after = ObjectiveTerms(accuracy=44.0, param_cost=-3.0, compute_cost=-2.0)
    step = RewardInputs(step=0, episode_length=3, initial=before, before=before, after=after)
    r = objective_reward(step, CFG, gamma=0.5)
    # γ·after − before per term: 22 − 40, −1.5 + 1, −1 + 0.5
    assert r == RewardBreakdown(accuracy=-18.0, param_cost=-0.5, compute_cost=-0.5, governor_penalty=0.0)
    assert r.total == -19.0 == 0.5 * after.total - before.total
    assert r.as_dict() == {"accuracy": -18.0, "param_cost": -0.5, "compute_cost": -0.5, "governor_penalty": 0.0}


def test_governor_rollback_ends_with_the_failed_objective_discounted_to_the_horizon() -> None:
    # T = 4, rollback on step t = 1 with o_0 = 20, o_1 = 30, γ = 0.5, penalty 10: o_T := −10.
    # r0 = 0.5·30 − 20 = −5; r1 = γ^{T−1−t}·(−10) − 30 = 0.25·(−10) − 30 = −32.5.
    # G_0 = −5 + 0.5·(−32.5) = −21.25 = γ³·(−10) − 20: the same affine map as a full-length episode.
    rewards = episode_rewards("objective", [acc(20.0), acc(30.0), acc(99.0)], 0.5, episode_length=4, rollback=True)
    assert rewards[1] == RewardBreakdown(accuracy=-30.0, governor_penalty=-2.5)
    assert [r.total for r in rewards] == [-5.0, -32.5]
    assert discounted([r.total for r in rewards], 0.5) == -21.25 == 0.5**3 * -10.0 - 20.0
    # sparse: γ^{T−1−t}·(−10 − 20) = −7.5 on the rollback step; G_0 = 0.5·(−7.5) = γ³·(−10 − 20).
    sparse = episode_rewards("sparse", [acc(20.0), acc(30.0), acc(99.0)], 0.5, episode_length=4, rollback=True)
    assert [r.total for r in sparse] == [0.0, -7.5] and sparse[1].governor_penalty == -2.5
    # with γ = 1 the rollback reward is the plain −penalty − o_t
    assert episode_rewards("objective", [acc(20.0), acc(30.0), acc(0.0)], 1.0, episode_length=4, rollback=True)[
        1
    ].total == (-10.0 - 30.0)


def test_objective_terms_total_is_the_stated_objective() -> None:
    config = ObjectiveConfig(param_price=0.5, compute_price=0.25)
    terms = objective_terms(80.0, 2000, 4.0, config)
    assert terms == ObjectiveTerms(accuracy=80.0, param_cost=-1.0, compute_cost=-1.0)
    assert terms.total == 78.0 == objective_value(80.0, 2000, 4.0, config)


finite = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)
terms_strategy = st.builds(ObjectiveTerms, accuracy=st.floats(0.0, 100.0), param_cost=finite, compute_cost=finite)


@given(
    objectives=st.lists(terms_strategy, min_size=2, max_size=9),
    gamma=st.floats(0.0, 1.0),
    extra_steps=st.integers(0, 4),
    rollback=st.booleans(),
)
def test_discounted_return_is_affine_in_the_final_objective(
    objectives: list[ObjectiveTerms], gamma: float, extra_steps: int, rollback: bool
) -> None:
    """G_0 = γ^{T−1}·o_T − o_0 (objective) and γ^{T−1}·(o_T − o_0) (sparse), whether the episode runs
    its whole length or the governor ends it early (o_T = −penalty); each component telescopes too."""
    steps = len(objectives) - 1
    length = steps + extra_steps if rollback else steps
    final = ObjectiveTerms(governor_penalty=-CFG.governor_penalty) if rollback else objectives[-1]
    horizon = gamma ** (length - 1)
    for mode, expected in (
        ("objective", lambda f: horizon * getattr(final, f) - getattr(objectives[0], f)),
        ("sparse", lambda f: horizon * (getattr(final, f) - getattr(objectives[0], f))),
    ):
        rewards = episode_rewards(mode, objectives, gamma, episode_length=length, rollback=rollback)
        for f in (f.name for f in fields(RewardBreakdown)):
            assert discounted([getattr(r, f) for r in rewards], gamma) == pytest.approx(expected(f), abs=1e-9)
        total = discounted([r.total for r in rewards], gamma)
        assert total == pytest.approx(sum(expected(f.name) for f in fields(RewardBreakdown)), abs=1e-9)


@given(
    start=st.floats(0.0, 100.0),
    middle_a=st.lists(st.floats(0.0, 100.0), min_size=3, max_size=3),
    middle_b=st.lists(st.floats(0.0, 100.0), min_size=3, max_size=3),
    gamma=st.floats(0.5, 1.0),
)
def test_two_episodes_from_the_same_start_rank_by_objective(
    start: float, middle_a: list[float], middle_b: list[float], gamma: float
) -> None:
    """Whatever path each episode takes, the one with the higher final objective has the higher return."""
    a = [acc(start), *map(acc, middle_a)]
    b = [acc(start), *map(acc, middle_b)]
    for mode in REWARD_MODES:
        g_a = discounted([r.total for r in episode_rewards(mode, a, gamma)], gamma)
        g_b = discounted([r.total for r in episode_rewards(mode, b, gamma)], gamma)
        if abs(middle_a[-1] - middle_b[-1]) > 1e-6:
            assert (g_a > g_b) == (middle_a[-1] > middle_b[-1])


@given(accuracy=st.floats(0.0, 100.0), params=st.integers(0, 10**7), compute=st.floats(0.0, 1e4))
def test_objective_terms_total_equals_objective_value_exactly(accuracy: float, params: int, compute: float) -> None:
    config = ObjectiveConfig()
    assert objective_terms(accuracy, params, compute, config).total == objective_value(
        accuracy, params, compute, config
    )


def test_modes_and_dispatch() -> None:
    step = RewardInputs(step=0, episode_length=2, initial=acc(1.0), before=acc(1.0), after=acc(3.0))
    assert REWARD_MODES == ("objective", "sparse")
    assert compute_reward("objective", step, CFG, gamma=0.5) == objective_reward(step, CFG, gamma=0.5)
    assert compute_reward("sparse", step, CFG, gamma=0.5) == sparse_reward(step, CFG, gamma=0.5) == RewardBreakdown()
    with pytest.raises(ValueError, match=r"unknown reward mode 'shaped'.*objective, sparse"):
        compute_reward("shaped", step, CFG, gamma=0.5)


@pytest.mark.parametrize("step", [-1, 2])
def test_step_must_lie_in_the_episode(step: int) -> None:
    with pytest.raises(ValueError, match="step must be in"):
        RewardInputs(step=step, episode_length=2, initial=acc(0.0), before=acc(0.0), after=acc(0.0))


@pytest.mark.parametrize("value", [-0.1, math.nan, 1e39])
def test_config_validation(value: float) -> None:
    with pytest.raises(ValueError, match=r"reward\.governor_penalty"):
        RewardConfig(governor_penalty=value)


@pytest.mark.parametrize("gamma", [-0.1, 1.5, math.nan])
def test_discount_must_be_in_unit_interval(gamma: float) -> None:
    with pytest.raises(ValueError, match="gamma"):
        check_discount(gamma)
    assert check_discount(0.0) == 0.0 and check_discount(1.0) == 1.0
