"""The padded all-heads layout and the fused scoring built on it agree with the per-head definitions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from esper.tamiyo.contract import SlotConfig, morphogenetic_action_space
from esper.tamiyo.networks import (
    MASKED_LOGIT,
    canonicalise_masks,
    choose_actions,
    head_log_probs,
    log_prob_of,
    masked_logits,
    normalised_entropy,
    score_actions,
    with_op_slot_mask,
)
from esper.tamiyo.networks.distributions import race_actions, race_noise
from esper.tamiyo.networks.padded import canonicalise_padded, pad_heads, padded_layout, unpad_heads

SPACE = morphogenetic_action_space(SlotConfig.for_count(3))
FLOORS = {"op": 0.15, "blueprint": 0.1}


def _random_masks(batch: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Random base masks (at least one valid action per row) and a ``slot_by_op`` with a slot for every op."""
    masks = {}
    for head, size in SPACE.sizes().items():
        mask = torch.rand(batch, size, generator=generator) < 0.6
        mask[torch.arange(batch), torch.randint(0, size, (batch,), generator=generator)] = True
        masks[head] = mask
    slot_by_op = torch.rand(batch, SPACE.num_ops, SPACE.size("slot"), generator=generator) < 0.5
    slot_by_op[..., 0] = True
    return masks, slot_by_op


def test_pad_and_unpad_round_trip_with_the_fill_in_padding() -> None:
    layout = padded_layout(SPACE, torch.device("cpu"))
    tensors = [torch.randn(2, 5, size) for size in SPACE.head_sizes]
    padded = pad_heads(layout, tensors, MASKED_LOGIT)
    assert padded.shape == (2, 5, SPACE.num_heads, max(SPACE.head_sizes))
    rows = zip(tensors, unpad_heads(layout, padded), SPACE.head_sizes, padded.unbind(-2), strict=True)
    for original, back, size, row in rows:
        assert torch.equal(original, back)
        assert torch.all(row[..., size:] == MASKED_LOGIT)


def test_the_layout_is_cached_and_never_an_inference_tensor() -> None:
    with torch.inference_mode():
        layout = padded_layout(SPACE, torch.device("cpu"))
    assert layout is padded_layout(SPACE, torch.device("cpu"))
    assert not layout.columns.is_inference()


@given(st.integers(0, 2**31 - 1), st.integers(1, 12))
@settings(max_examples=30, deadline=None)
def test_padded_canonicalisation_matches_the_per_head_rule(seed: int, batch: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    masks, slot_by_op = _random_masks(batch, generator)
    ops = torch.multinomial(masks["op"].float(), 1, generator=generator).squeeze(-1)
    conditioned = with_op_slot_mask(SPACE, masks, slot_by_op, ops)
    layout = padded_layout(SPACE, torch.device("cpu"))
    padded = canonicalise_padded(layout, ops, pad_heads(layout, [conditioned[h] for h in SPACE.head_names], False))
    expected = canonicalise_masks(SPACE, ops, conditioned)
    for head, got in zip(SPACE.head_names, unpad_heads(layout, padded), strict=True):
        assert torch.equal(got, expected[head]), head


@pytest.mark.parametrize("floors", [{}, FLOORS])
def test_fused_scoring_equals_the_per_head_definition(floors: dict[str, float]) -> None:
    """Bit for bit: log-probs per head as ``head_log_probs`` gives them; entropies to rounding (summed padded)."""
    generator = torch.Generator().manual_seed(0)
    masks, slot_by_op = _random_masks(64, generator)
    logits = {h: torch.randn(64, n, generator=generator) * 3 for h, n in SPACE.sizes().items()}
    chosen = choose_actions(SPACE, floors, logits, masks, slot_by_op, generator=generator)
    conditioned = with_op_slot_mask(SPACE, masks, slot_by_op, chosen.actions["op"])
    canonical = canonicalise_masks(SPACE, chosen.actions["op"], conditioned)
    scored = score_actions(SPACE, floors, logits, conditioned, chosen.actions)
    for head in SPACE.head_names:
        log_probs = head_log_probs(logits[head], canonical[head], floors.get(head, 0.0))
        assert canonical[head].gather(1, chosen.actions[head][:, None]).all(), head
        assert torch.equal(chosen.log_probs[head], log_prob_of(log_probs, chosen.actions[head])), head
        assert torch.equal(scored.log_probs[head], chosen.log_probs[head]), head
        assert torch.equal(scored.entropies[head], chosen.entropies[head]), head
        torch.testing.assert_close(chosen.entropies[head], normalised_entropy(log_probs, canonical[head]))


def test_deterministic_choice_is_the_per_head_argmax() -> None:
    generator = torch.Generator().manual_seed(1)
    masks, slot_by_op = _random_masks(32, generator)
    logits = {h: torch.randn(32, n, generator=generator) for h, n in SPACE.sizes().items()}
    chosen = choose_actions(SPACE, FLOORS, logits, masks, slot_by_op, deterministic=True)
    canonical = canonicalise_masks(
        SPACE, chosen.actions["op"], with_op_slot_mask(SPACE, masks, slot_by_op, chosen.actions["op"])
    )
    for head in SPACE.head_names:
        expected = head_log_probs(logits[head], canonical[head], FLOORS.get(head, 0.0)).argmax(-1)
        assert torch.equal(chosen.actions[head], expected), head


def test_the_race_draws_each_valid_action_with_its_probability() -> None:
    """10k draws of one distribution: frequencies within 5 standard errors; masked actions never."""
    draws = 10_000
    mask = torch.tensor([True, False, True, True, False, True])
    log_probs = head_log_probs(torch.tensor([1.0, 9.0, 0.0, -1.0, 9.0, 2.0]), mask).expand(draws, -1)
    noise = race_noise((draws, 6), log_probs, torch.Generator().manual_seed(3))
    counts = torch.bincount(race_actions(log_probs, mask.expand(draws, -1), noise), minlength=6)
    probs = log_probs[0].exp()
    assert counts[~mask].sum() == 0
    for count, p in zip(counts.tolist(), probs.tolist(), strict=True):
        assert abs(count / draws - p) <= 5 * math.sqrt(p * (1 - p) / draws) + 1e-9


def test_the_race_never_picks_a_masked_action_whatever_the_noise() -> None:
    """Uniform draws of 0 and just below 1 included, and valid actions of probability 0."""
    log_probs = torch.tensor([[0.0, MASKED_LOGIT, -200.0]]).expand(4, -1)
    mask = torch.tensor([[False, True, True]]).expand(4, -1)
    almost_one = 1.0 - 2.0**-24
    noise = torch.tensor([[almost_one, 0.0, 0.0], [0.0, almost_one, almost_one], [0.0] * 3, [1e-30, 0.5, 0.5]])
    assert mask.gather(1, race_actions(log_probs, mask, noise)[:, None]).all()


@pytest.mark.parametrize("batch", [1, 3, 16, 64, 600])
def test_padded_log_softmax_rounds_like_the_per_head_one(batch: int) -> None:
    """The rollout's one padded ``log_softmax`` and the update's per-head ones give the same bits.

    Rollout/update parity rests on it (``scoring`` module docstring): padding cells are
    ``MASKED_LOGIT`` and add an exact 0 to each row's sum.
    """
    generator = torch.Generator().manual_seed(batch)
    layout = padded_layout(SPACE, torch.device("cpu"))
    masks, _ = _random_masks(batch, generator)
    logits = [torch.randn(batch, n, generator=generator) * 4 for n in SPACE.head_sizes]
    padded_masks = pad_heads(layout, [masks[h] for h in SPACE.head_names], False)
    padded = torch.log_softmax(masked_logits(pad_heads(layout, logits, 0.0), padded_masks), dim=-1)
    for head, values, row in zip(SPACE.head_names, logits, unpad_heads(layout, padded), strict=True):
        expected = head_log_probs(values, masks[head])
        assert torch.equal(row[masks[head]], expected[masks[head]]), head
