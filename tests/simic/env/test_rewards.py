"""Reward components on hand-built cases with hand-worked values (esper.simic.env.rewards)."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esper.simic.env.rewards import (
    REWARD_MODES,
    STAGE_POTENTIALS,
    RewardBreakdown,
    RewardConfig,
    RewardInputs,
    check_discount,
    compute_reward,
    rent_term,
    seed_credit,
    shaped_reward,
    simplified_reward,
    sparse_reward,
    stage_shaping_term,
    state_potential,
)
from esper.tamiyo.contract import LifecycleOp, SeedStage

D, G, T, B, H, F, P = (
    SeedStage.DORMANT,
    SeedStage.GERMINATED,
    SeedStage.TRAINING,
    SeedStage.BLENDING,
    SeedStage.HOLDING,
    SeedStage.FOSSILIZED,
    SeedStage.PRUNED,
)
CFG = RewardConfig()
GAMMA = 0.99


def inputs(**overrides: object) -> RewardInputs:
    """A WAIT step with three empty slots, 50 % accuracy, no seeds; fields overridden by keyword."""
    base: dict[str, object] = {
        "op": LifecycleOp.WAIT,
        "action_valid": True,
        "stages_before": (D, D, D),
        "stages_after": (D, D, D),
        "val_accuracy": 50.0,
        "seed_params": 0,
        "host_params": 1000,
    }
    base.update(overrides)
    return RewardInputs(**base)  # type: ignore[arg-type]


def test_breakdown_total_is_sum_of_components() -> None:
    parts = RewardBreakdown(attribution=1.0, stage_shaping=0.5, rent=-0.25, action_cost=-0.125, terminal_bonus=2.0)
    assert parts.total == pytest.approx(3.125)
    assert parts.as_dict() == {
        "attribution": 1.0,
        "stage_shaping": 0.5,
        "rent": -0.25,
        "action_cost": -0.125,
        "invalid_penalty": 0.0,
        "terminal_bonus": 2.0,
        "governor_penalty": 0.0,
    }


def test_stage_potentials_table_and_state_sum() -> None:
    assert set(STAGE_POTENTIALS) == set(SeedStage)
    path = [STAGE_POTENTIALS[s] for s in (D, G, T, B, H, F)]
    assert path == [0.0, 1.0, 2.0, 3.5, 5.5, 6.0]
    assert all(STAGE_POTENTIALS[s] == 0.0 for s in (P, SeedStage.EMBARGOED, SeedStage.RESETTING))
    assert state_potential((T, H, F)) == 13.5


def test_germinate_step_components_exact() -> None:
    # GERMINATE with auto-advance: an empty slot ends the step in TRAINING.
    step = inputs(op=LifecycleOp.GERMINATE, stages_after=(T, D, D), seed_params=1000)
    r = shaped_reward(step, CFG, gamma=GAMMA)
    assert r.stage_shaping == pytest.approx(0.3 * (0.99 * 2.0 - 0.0))  # 0.594
    assert r.action_cost == pytest.approx(-0.15)
    assert r.rent == pytest.approx(-0.005 * math.log(2.0))  # seed as large as the host
    assert r.attribution == 0.0 and r.terminal_bonus == 0.0 and r.invalid_penalty == 0.0
    assert r.total == pytest.approx(0.594 - 0.15 - 0.005 * math.log(2.0))


@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.9])
@given(stages=st.lists(st.tuples(*[st.sampled_from(list(SeedStage))] * 3), min_size=2, max_size=12))
def test_stage_shaping_telescopes(gamma: float, stages: list[tuple[int, int, int]]) -> None:
    """Σ_t γ^t F_t = w (γ^T Φ(s_T) − Φ(s_0)) for any stage trajectory (Ng et al. 1999)."""
    discounted = sum(
        gamma**t * simplified_reward(inputs(stages_before=before, stages_after=after), CFG, gamma=gamma).stage_shaping
        for t, (before, after) in enumerate(itertools.pairwise(stages))
    )
    horizon = len(stages) - 1
    expected = 0.3 * (gamma**horizon * state_potential(stages[-1]) - state_potential(stages[0]))
    assert discounted == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("mode", ["shaped", "simplified"])
@given(stages=st.lists(st.tuples(*[st.sampled_from(list(SeedStage))] * 3), min_size=2, max_size=12))
def test_episode_shaping_sums_to_minus_initial_potential(mode: str, stages: list[tuple[int, int, int]]) -> None:
    """Over a whole episode (last step flagged) the shaping sums to -w Φ(s_0), whatever the policy did:
    ending with seeds parked in high-potential stages earns nothing."""
    steps = list(itertools.pairwise(stages))
    discounted = sum(
        0.99**t
        * compute_reward(
            mode, inputs(stages_before=before, stages_after=after, is_last_step=t == len(steps) - 1), CFG, gamma=0.99
        ).stage_shaping
        for t, (before, after) in enumerate(steps)
    )
    assert discounted == pytest.approx(-0.3 * state_potential(stages[0]), abs=1e-9)


def test_last_step_drops_the_final_potential() -> None:
    r = shaped_reward(inputs(stages_before=(F, H, D), stages_after=(F, F, D), is_last_step=True), CFG, gamma=GAMMA)
    assert r.stage_shaping == pytest.approx(-0.3 * (6.0 + 5.5))


def test_prune_forfeits_potential() -> None:
    r = shaped_reward(inputs(op=LifecycleOp.PRUNE, stages_before=(H, D, D), stages_after=(P, D, D)), CFG, gamma=GAMMA)
    assert r.stage_shaping == pytest.approx(-0.3 * 5.5)
    assert r.action_cost == pytest.approx(-0.005)


def test_stage_shaping_term_formula() -> None:
    assert stage_shaping_term(2.0, 3.5, 0.5, 0.3) == pytest.approx(0.3 * (0.5 * 3.5 - 2.0))


@pytest.mark.parametrize(
    ("seed_params", "host_params", "expected"),
    [
        (0, 1000, 0.0),
        (1000, 1000, -0.005 * math.log(2.0)),
        (3000, 1000, -0.005 * math.log(4.0)),
        (100, 50, -0.005 * math.log(1.5)),  # host below the 200 floor: 100 / 200
        (19_000, 1000, -0.005 * math.log(20.0)),  # just below the cap (0.01498)
        (10**6, 1000, -0.015),  # capped
    ],
)
def test_rent(seed_params: int, host_params: int, expected: float) -> None:
    assert rent_term(seed_params, host_params, CFG) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("op", "cost"),
    [
        (LifecycleOp.WAIT, 0.0),
        (LifecycleOp.GERMINATE, 0.15),
        (LifecycleOp.SET_ALPHA_TARGET, 0.005),
        (LifecycleOp.PRUNE, 0.005),
        (LifecycleOp.FOSSILIZE, 0.01),
        (LifecycleOp.ADVANCE, 0.0),
    ],
)
def test_action_costs(op: LifecycleOp, cost: float) -> None:
    assert CFG.action_cost(op) == cost
    assert shaped_reward(inputs(op=op), CFG, gamma=GAMMA).action_cost == -cost
    assert simplified_reward(inputs(op=op), CFG, gamma=GAMMA).action_cost == -cost


def test_invalid_action_penalty_on_executed_wait() -> None:
    r = shaped_reward(inputs(action_valid=False), CFG, gamma=GAMMA)
    assert r.invalid_penalty == pytest.approx(-0.1)
    assert r.action_cost == 0.0
    assert r.total == pytest.approx(-0.1)


@pytest.mark.parametrize(
    ("contribution", "progress", "credit"),
    [
        (-2.0, 5.0, -2.0),  # harmful seeds are charged in full
        (-2.0, None, -2.0),
        (4.0, 10.0, 4.0),  # credit below progress: the contribution
        (8.0, 3.0, 3.0),  # removal cost above progress: capped at the progress
        (8.0, -1.0, 0.0),  # no progress since germination: no credit
        (8.0, None, 8.0),
    ],
)
def test_seed_credit(contribution: float, progress: float | None, credit: float) -> None:
    assert seed_credit(contribution, progress) == credit


@pytest.mark.parametrize(
    ("op", "contribution", "expected"),
    [
        (LifecycleOp.FOSSILIZE, 6.0, 0.6),
        (LifecycleOp.FOSSILIZE, -3.0, -0.3),
        (LifecycleOp.PRUNE, 6.0, -0.6),
        (LifecycleOp.PRUNE, -3.0, 0.3),
        (LifecycleOp.WAIT, 6.0, 0.0),
        (LifecycleOp.SET_ALPHA_TARGET, 6.0, 0.0),
    ],
)
def test_attribution_by_op(op: LifecycleOp, contribution: float, expected: float) -> None:
    step = inputs(op=op, stages_before=(H, D, D), stages_after=(H, D, D), seed_contribution=contribution)
    assert shaped_reward(step, CFG, gamma=GAMMA).attribution == pytest.approx(expected)
    assert simplified_reward(step, CFG, gamma=GAMMA).attribution == 0.0


def test_attribution_uses_progress_cap_and_weight() -> None:
    step = inputs(op=LifecycleOp.FOSSILIZE, seed_contribution=12.0, seed_progress=5.0)
    assert shaped_reward(step, RewardConfig(contribution_weight=0.2), gamma=GAMMA).attribution == pytest.approx(1.0)
    assert shaped_reward(replace(step, seed_contribution=None), CFG, gamma=GAMMA).attribution == 0.0


def test_terminal_bonus_only_on_last_step() -> None:
    assert shaped_reward(inputs(val_accuracy=70.0), CFG, gamma=GAMMA).terminal_bonus == 0.0
    last = inputs(val_accuracy=70.0, is_last_step=True)
    assert shaped_reward(last, CFG, gamma=GAMMA).terminal_bonus == pytest.approx(3.5)
    assert simplified_reward(last, CFG, gamma=GAMMA).terminal_bonus == pytest.approx(3.5)


def test_sparse_is_zero_before_the_last_step() -> None:
    busy = inputs(
        op=LifecycleOp.FOSSILIZE,
        action_valid=False,
        stages_before=(H, D, D),
        stages_after=(F, D, D),
        seed_contribution=5.0,
        seed_params=1000,
    )
    assert sparse_reward(busy, CFG, gamma=GAMMA) == RewardBreakdown()
    last = sparse_reward(replace(busy, is_last_step=True, val_accuracy=80.0), CFG, gamma=GAMMA)
    assert last.terminal_bonus == pytest.approx(4.0)
    assert last.rent == pytest.approx(-0.005 * math.log(2.0))
    assert last.total == pytest.approx(4.0 - 0.005 * math.log(2.0))


@pytest.mark.parametrize("mode", REWARD_MODES)
def test_governor_rollback(mode: str) -> None:
    step = inputs(
        op=LifecycleOp.FOSSILIZE,
        stages_before=(H, F, D),
        stages_after=(P, F, D),
        seed_contribution=5.0,
        seed_params=1000,
        is_last_step=True,
        governor_rollback=True,
        val_accuracy=math.nan,
    )
    r = compute_reward(mode, step, CFG, gamma=GAMMA)
    shaping = 0.0 if mode == "sparse" else -0.3 * (5.5 + 6.0)  # terminal potential is 0
    assert r.as_dict() == pytest.approx(RewardBreakdown(stage_shaping=shaping, governor_penalty=-10.0).as_dict())


def test_compute_reward_dispatches_by_mode() -> None:
    step = inputs(op=LifecycleOp.FOSSILIZE, stages_before=(H, D, D), stages_after=(F, D, D), seed_contribution=5.0)
    assert compute_reward("shaped", step, CFG, gamma=GAMMA) == shaped_reward(step, CFG, gamma=GAMMA)
    assert compute_reward("simplified", step, CFG, gamma=GAMMA) == simplified_reward(step, CFG, gamma=GAMMA)
    assert compute_reward("sparse", step, CFG, gamma=GAMMA) == sparse_reward(step, CFG, gamma=GAMMA)
    assert REWARD_MODES == ("shaped", "simplified", "sparse")


def test_unknown_mode_raises_with_known_modes() -> None:
    with pytest.raises(ValueError, match=r"unknown reward mode 'dense'.*shaped, simplified, sparse"):
        compute_reward("dense", inputs(), CFG, gamma=GAMMA)


@pytest.mark.parametrize(
    "overrides",
    [
        {"op": 6},
        {"stages_after": (D, D)},
        {"stages_before": (), "stages_after": ()},
        {"stages_before": (5, D, D)},  # retired stage value
        {"host_params": 0},
        {"seed_params": -1},
        {"val_accuracy": math.inf},
        {"seed_contribution": math.nan},
    ],
)
def test_inputs_validation(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        inputs(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [{"rent_weight": -0.1}, {"governor_penalty": math.nan}, {"prune_cost": 1e39}, {"rent_host_floor": 0}],
)
def test_config_validation(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"reward.{next(iter(overrides))}"):
        RewardConfig(**overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize("gamma", [-0.1, 1.5, math.nan])
def test_discount_must_be_in_unit_interval(gamma: float) -> None:
    with pytest.raises(ValueError, match="gamma"):
        check_discount(gamma)
    assert check_discount(0.0) == 0.0 and check_discount(1.0) == 1.0
