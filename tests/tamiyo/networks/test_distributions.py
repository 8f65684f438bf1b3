"""Exact values of the masked FP32 distribution helpers shared by both policy legs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from esper.tamiyo.contract import EmptyMaskError
from esper.tamiyo.networks.distributions import (
    MASKED_LOGIT,
    apply_probability_floor,
    check_nonempty,
    greedy_actions,
    head_log_probs,
    log_prob_of,
    masked_logits,
    normalised_entropy,
    sample_actions,
)


def test_masked_logits_are_fp32_with_the_finite_sentinel() -> None:
    logits = torch.tensor([[1.5, -2.0, 3.0]], dtype=torch.float16)
    mask = torch.tensor([[True, False, True]])
    out = masked_logits(logits, mask)
    assert out.dtype == torch.float32
    assert out.tolist() == [[1.5, MASKED_LOGIT, 3.0]]


@pytest.mark.parametrize("floor", [0.0, 0.3])
def test_single_valid_action_has_log_prob_and_entropy_exactly_zero(floor: float) -> None:
    logits = torch.tensor([[4.0, -1.0, 2.5, 7.0]])
    mask = torch.tensor([[False, False, True, False]])
    log_probs = head_log_probs(logits, mask, floor)
    assert log_prob_of(log_probs, torch.tensor([2])).item() == 0.0
    assert normalised_entropy(log_probs, mask).item() == 0.0
    assert greedy_actions(log_probs).item() == 2


@pytest.mark.parametrize("k", [2, 3, 7])
def test_k_equal_valid_logits_give_entropy_one_and_log_prob_minus_ln_k(k: int) -> None:
    logits = torch.full((1, 9), 0.25)
    mask = torch.zeros(1, 9, dtype=torch.bool)
    mask[0, :k] = True
    log_probs = head_log_probs(logits, mask)
    expected = torch.full((k,), -math.log(k))
    torch.testing.assert_close(log_probs[0, :k], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(normalised_entropy(log_probs, mask), torch.ones(1), rtol=0, atol=1e-6)
    assert torch.all(log_probs[0, k:].exp() == 0.0)


def test_floor_raises_low_actions_and_rescales_the_rest() -> None:
    # Hand example: p = [0.7, 0.2, 0.05, 0.05, masked], floor 0.1 (cap 0.99/4 = 0.2475 does not bind).
    # Below floor: 0.05, 0.05 -> 0.1 each (mass 0.2); the others share 0.8: 0.7*0.8/0.9, 0.2*0.8/0.9.
    probs = torch.tensor([[0.7, 0.2, 0.05, 0.05, 0.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    log_probs = torch.where(mask, probs.log(), torch.tensor(MASKED_LOGIT))
    floored = apply_probability_floor(log_probs, mask, 0.1)
    expected = torch.tensor([0.7 * 0.8 / 0.9, 0.2 * 0.8 / 0.9, 0.1, 0.1])
    torch.testing.assert_close(floored[0, :4].exp(), expected, rtol=1e-6, atol=1e-7)
    assert floored[0, 4].item() == MASKED_LOGIT


def test_effective_floor_is_capped_at_99_percent_of_uniform() -> None:
    # Floor 0.5 over 3 valid actions is impossible; the effective floor is 0.99 / 3 = 0.33.
    probs = torch.tensor([[0.98, 0.01, 0.01]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    floored = apply_probability_floor(probs.log(), mask, 0.5)
    torch.testing.assert_close(floored.exp(), torch.tensor([[0.34, 0.33, 0.33]]), rtol=1e-6, atol=1e-7)


def test_head_log_probs_with_floor_stay_normalised() -> None:
    logits = torch.tensor([[6.0, 0.0, -3.0, 1.0]])
    mask = torch.tensor([[True, True, True, False]])
    log_probs = head_log_probs(logits, mask, 0.15)
    probs = log_probs.exp()
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
    assert probs[0, 3].item() == 0.0
    assert torch.all(probs[0, :3] >= 0.15 - 1e-6)


def test_empty_mask_row_raises_naming_the_head() -> None:
    masks = {"op": torch.tensor([[True, False], [True, True]]), "slot": torch.tensor([[True], [False]])}
    with pytest.raises(EmptyMaskError, match="slot"):
        check_nonempty(masks)
    check_nonempty({"op": masks["op"]})


def test_masked_actions_are_never_sampled() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([[9.0, 0.0, 9.0, -2.0, 0.5]]).expand(4000, -1)
    mask = torch.tensor([[False, True, False, True, True]]).expand(4000, -1)
    actions = sample_actions(head_log_probs(logits, mask), generator)
    assert set(actions.unique().tolist()) == {1, 3, 4}


def test_sampling_is_reproducible_with_an_explicit_generator() -> None:
    log_probs = head_log_probs(torch.zeros(64, 6), torch.ones(64, 6, dtype=torch.bool))
    first = sample_actions(log_probs, torch.Generator().manual_seed(7))
    second = sample_actions(log_probs, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


@st.composite
def _logits_and_masks(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(1, 9))
    values = draw(st.lists(st.floats(-30, 30, allow_nan=False), min_size=n, max_size=n))
    valid = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    valid[draw(st.integers(0, n - 1))] = True
    return torch.tensor([values]), torch.tensor([valid])


@given(_logits_and_masks(), st.sampled_from([0.0, 0.05, 0.2]))
def test_distribution_properties(case: tuple[torch.Tensor, torch.Tensor], floor: float) -> None:
    logits, mask = case
    log_probs = head_log_probs(logits, mask, floor)
    entropy = normalised_entropy(log_probs, mask)
    assert 0.0 <= entropy.item() <= 1.0
    probs = log_probs.exp()
    assert torch.all(probs[~mask] == 0.0)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
    assert mask[0, greedy_actions(log_probs)].item()
