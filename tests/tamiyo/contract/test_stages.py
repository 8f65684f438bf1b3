"""Seed stages: fixed integer values, the transition table, stage sets and random lifecycle walks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esper.tamiyo.contract import (
    ACTIVE_STAGES,
    ADVANCEABLE_STAGES,
    FAILURE_STAGES,
    GERMINATION_BLOCKING_STAGES,
    PRUNABLE_STAGES,
    STAGE_ORDER,
    VALID_TRANSITIONS,
    IllegalTransitionError,
    SeedStage,
    can_transition,
    check_transition,
    is_terminal_stage,
)

S = SeedStage

#: The stage table, written out independently of the implementation.
EXPECTED_TRANSITIONS: dict[SeedStage, set[SeedStage]] = {
    S.UNKNOWN: {S.DORMANT},
    S.DORMANT: {S.GERMINATED},
    S.GERMINATED: {S.TRAINING, S.PRUNED},
    S.TRAINING: {S.BLENDING, S.PRUNED},
    S.BLENDING: {S.HOLDING, S.PRUNED},
    S.HOLDING: {S.FOSSILIZED, S.BLENDING, S.PRUNED},
    S.FOSSILIZED: set(),
    S.PRUNED: {S.EMBARGOED},
    S.EMBARGOED: {S.RESETTING},
    S.RESETTING: {S.DORMANT},
}
ALL_PAIRS = list(itertools.product(SeedStage, SeedStage))
LEGAL_PAIRS = [(a, b) for a, b in ALL_PAIRS if b in EXPECTED_TRANSITIONS[a]]
ILLEGAL_PAIRS = [(a, b) for a, b in ALL_PAIRS if b not in EXPECTED_TRANSITIONS[a]]


def test_stage_values_are_fixed_and_five_is_retired() -> None:
    assert {s.name: int(s) for s in SeedStage} == {
        "UNKNOWN": 0,
        "DORMANT": 1,
        "GERMINATED": 2,
        "TRAINING": 3,
        "BLENDING": 4,
        "HOLDING": 6,
        "FOSSILIZED": 7,
        "PRUNED": 8,
        "EMBARGOED": 9,
        "RESETTING": 10,
    }
    with pytest.raises(ValueError):
        SeedStage(5)


def test_transition_table_matches_spec() -> None:
    assert set(VALID_TRANSITIONS) == set(SeedStage)
    assert {k: set(v) for k, v in VALID_TRANSITIONS.items()} == EXPECTED_TRANSITIONS


def test_holding_lists_fossilized_first() -> None:
    """The default advance out of HOLDING means finalise (FOSSILIZED)."""
    assert VALID_TRANSITIONS[S.HOLDING][0] == S.FOSSILIZED


def test_transition_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        VALID_TRANSITIONS[S.FOSSILIZED] = (S.PRUNED,)  # type: ignore[index]


@pytest.mark.parametrize(("source", "target"), LEGAL_PAIRS, ids=lambda s: s.name)
def test_check_transition_accepts_every_legal_pair(source: SeedStage, target: SeedStage) -> None:
    assert can_transition(source, target)
    result = check_transition(int(source), int(target))
    assert result is target and isinstance(result, SeedStage)


def test_check_transition_raises_for_every_pair_not_in_table() -> None:
    assert len(LEGAL_PAIRS) == 14 and len(ILLEGAL_PAIRS) == 100 - 14
    for source, target in ILLEGAL_PAIRS:
        assert not can_transition(source, target)
        with pytest.raises(IllegalTransitionError, match=f"{source.name} -> {target.name}"):
            check_transition(source, target)


def test_illegal_transition_message_lists_allowed_targets() -> None:
    with pytest.raises(IllegalTransitionError, match="allowed from TRAINING: BLENDING, PRUNED"):
        check_transition(S.TRAINING, S.HOLDING)
    with pytest.raises(IllegalTransitionError, match=r"none \(terminal\)"):
        check_transition(S.FOSSILIZED, S.PRUNED)


def test_illegal_transition_error_is_a_value_error() -> None:
    assert issubclass(IllegalTransitionError, ValueError)


def test_check_transition_rejects_retired_value() -> None:
    with pytest.raises(ValueError, match="5"):
        check_transition(S.BLENDING, 5)


def test_stage_sets() -> None:
    assert {S.TRAINING, S.BLENDING, S.HOLDING, S.FOSSILIZED} == ACTIVE_STAGES
    assert {S.PRUNED, S.EMBARGOED, S.RESETTING} == FAILURE_STAGES
    assert {S.GERMINATED, S.TRAINING, S.BLENDING, S.HOLDING} == PRUNABLE_STAGES
    assert {S.GERMINATED, S.TRAINING, S.PRUNED, S.EMBARGOED, S.RESETTING} == GERMINATION_BLOCKING_STAGES
    assert {S.GERMINATED, S.TRAINING, S.BLENDING} == ADVANCEABLE_STAGES


def test_advanceable_stages_advance_along_the_table() -> None:
    """ADVANCE moves GERMINATED→TRAINING→BLENDING→HOLDING, each a legal first transition."""
    for stage in ADVANCEABLE_STAGES:
        assert can_transition(stage, VALID_TRANSITIONS[stage][0])
    assert [VALID_TRANSITIONS[s][0] for s in (S.GERMINATED, S.TRAINING, S.BLENDING)] == [
        S.TRAINING,
        S.BLENDING,
        S.HOLDING,
    ]


def test_stage_order_is_the_ten_stages_in_value_order() -> None:
    assert tuple(sorted(SeedStage)) == STAGE_ORDER
    assert len(STAGE_ORDER) == 10


def test_only_fossilized_is_terminal() -> None:
    assert [s for s in SeedStage if is_terminal_stage(s)] == [S.FOSSILIZED]
    assert is_terminal_stage(7)
    assert [s for s in SeedStage if not VALID_TRANSITIONS[s]] == [S.FOSSILIZED]


def test_every_stage_is_reachable_from_unknown() -> None:
    seen = {S.UNKNOWN}
    frontier = [S.UNKNOWN]
    while frontier:
        for nxt in VALID_TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(SeedStage)


@given(start=st.sampled_from(list(SeedStage)), choices=st.lists(st.integers(0, 2), min_size=1, max_size=40))
def test_random_walks_never_reach_an_illegal_stage(start: SeedStage, choices: list[int]) -> None:
    stage = start
    for choice in choices:
        options = VALID_TRANSITIONS[stage]
        if not options:
            assert stage is S.FOSSILIZED
            break
        nxt = check_transition(stage, options[choice % len(options)])
        assert nxt in EXPECTED_TRANSITIONS[stage]
        assert isinstance(nxt, SeedStage) and int(nxt) != 5
        stage = nxt
