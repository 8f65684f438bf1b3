"""The two legs of the factored policy, side by side: choose actions (rollout), score actions (update).

Both turn raw head logits into per-head actions, log-probs and normalised entropies through the
same canonicalisation and the same FP32 helpers, in the same order, so for equal logits, masks
and actions they return bit-identical numbers (the first PPO ratio is exactly 1). They are pure
functions over tensors: no module, no hidden RNG, no host sync, compile-friendly.

Both work on all heads together in the padded ``[..., H, N]`` layout of
:mod:`esper.tamiyo.networks.padded`: canonicalisation, sampling, the chosen actions' log-probs and
the entropies are one op each for every head (on the rollout leg, at small batches, op count is
what the latency follows). The masked ``log_softmax`` is the one step the legs run differently,
each the way that is fast for it: the rollout once over the padded ``[B, H, N]`` rows, the update
per head at its own width (padded ``[B*T, H, N]`` rows cost it ~3x more). The results are the
same bits: a padding cell is ``MASKED_LOGIT``, whose ``exp`` is exactly 0, so it changes neither
the row max nor the sum (``test_padded_log_softmax_rounds_like_the_per_head_one`` guards this for
the morphogenetic head sizes). With a probability floor both legs score per head (the floor's
sums would round differently over padded rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch

from esper.tamiyo.contract import ActionSpace
from esper.tamiyo.networks.canonical import with_op_slot_mask
from esper.tamiyo.networks.distributions import (
    MASKED_LOGIT,
    greedy_actions,
    head_log_probs,
    log_prob_of,
    masked_logits,
    normalised_entropy,
    race_actions,
    race_noise,
)
from esper.tamiyo.networks.padded import (
    PaddedLayout,
    canonicalise_padded,
    pad_heads,
    padded_layout,
    unpad_heads,
    unstack_heads,
)


class HeadScores(NamedTuple):
    """Per-head results keyed by head name, in head order; every tensor shaped like the ops."""

    actions: dict[str, torch.Tensor]
    """int64 chosen (or given) action per head."""
    log_probs: dict[str, torch.Tensor]
    """float32 log-prob of that action (exactly 0 for heads irrelevant to the op)."""
    entropies: dict[str, torch.Tensor]
    """float32 entropy normalised by ln(#valid) after canonicalisation, in [0, 1]."""


def choose_actions(
    action_space: ActionSpace,
    floors: Mapping[str, float],
    logits: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    slot_by_op: torch.Tensor | None,
    *,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> HeadScores:
    """Rollout leg for one step of B environments.

    The op is drawn first (argmax when ``deterministic``) from its floored FP32 distribution;
    the slot mask is then the ``slot_by_op`` row of that op, every head irrelevant to it is made
    one-hot at its canonical action, and every other head is drawn from its distribution under
    those masks. Sampling is one exponential race (:func:`race_actions`) over all heads, with
    noise drawn once for the whole ``[B, H, N]`` step; the op uses its own row of that noise, and
    the op row's second draw (the same op) is discarded.

    Args:
        action_space: head order, op head, relevance and placeholders.
        floors: per-head probability floor (missing heads: no floor).
        logits: ``{head: [B, n]}`` raw logits.
        masks: ``{head: bool [B, n]}`` base masks.
        slot_by_op: bool ``[B, num_ops, S]``, or None when the space has no op-dependent slot head.
        deterministic: argmax instead of sampling.
        generator: RNG for sampling (on the logits' device); None uses torch's global RNG.
    """
    op_head = action_space.op_head
    op_mask = masks[op_head]
    layout = padded_layout(action_space, op_mask.device)
    op_log_probs = head_log_probs(logits[op_head], op_mask, floors.get(op_head, 0.0))
    noise = None
    if deterministic:
        ops = greedy_actions(op_log_probs)
    else:
        noise = race_noise((*op_mask.shape[:-1], action_space.num_heads, layout.width), op_mask, generator)
        ops = race_actions(op_log_probs, op_mask, noise[..., layout.op_index, : op_mask.shape[-1]])
    conditioned = masks if slot_by_op is None else with_op_slot_mask(action_space, masks, slot_by_op, ops)
    canonical = _canonical_masks(action_space, layout, conditioned, ops)
    log_probs = _log_probs(action_space, layout, floors, logits, canonical, rollout=True)
    drawn = greedy_actions(log_probs) if noise is None else race_actions(log_probs, canonical, noise)
    actions = torch.where(layout.is_op, ops.unsqueeze(-1), drawn)
    return _scores(action_space, actions, log_probs, canonical)


def score_actions(
    action_space: ActionSpace,
    floors: Mapping[str, float],
    logits: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    actions: Mapping[str, torch.Tensor],
) -> HeadScores:
    """Update leg: log-probs and entropies of stored ``actions {head: [...]}``.

    ``logits {head: [..., n]}``, ``masks {head: bool [..., n]}`` with the slot mask already
    op-conditioned (as the rollout buffer stores it); canonicalisation uses the stored op.
    """
    stacked = torch.stack([actions[head].long() for head in action_space.head_names], dim=-1)
    layout = padded_layout(action_space, stacked.device)
    canonical = _canonical_masks(action_space, layout, masks, stacked[..., layout.op_index])
    log_probs = _log_probs(action_space, layout, floors, logits, canonical, rollout=False)
    return _scores(action_space, stacked, log_probs, canonical)


def _canonical_masks(
    action_space: ActionSpace, layout: PaddedLayout, masks: Mapping[str, torch.Tensor], ops: torch.Tensor
) -> torch.Tensor:
    """Padded bool masks ``[..., H, N]`` of every head, canonicalised for ``ops [...]``."""
    padded = pad_heads(layout, [masks[head] for head in action_space.head_names], False)
    return canonicalise_padded(layout, ops, padded)


def _log_probs(
    action_space: ActionSpace,
    layout: PaddedLayout,
    floors: Mapping[str, float],
    logits: Mapping[str, torch.Tensor],
    canonical: torch.Tensor,
    *,
    rollout: bool,
) -> torch.Tensor:
    """Padded FP32 log-probs ``[..., H, N]`` of every head under its canonical mask (padding: ``MASKED_LOGIT``).

    The rollout leg (``rollout``) takes one ``log_softmax`` over the padded heads; the update leg scores
    each head at its own width (padded rows made the update about 20 % slower). Both give the same
    bits. With any probability floor (not the default) the rollout scores head by head too: the
    floor's sums would round differently over padded rows.
    """
    if rollout and not any(floor > 0.0 for floor in floors.values()):
        padded = pad_heads(layout, [logits[head] for head in action_space.head_names], 0.0)
        return torch.log_softmax(masked_logits(padded, canonical), dim=-1)
    per_head = [
        head_log_probs(logits[head], mask, floors.get(head, 0.0))
        for head, mask in zip(action_space.head_names, unpad_heads(layout, canonical), strict=True)
    ]
    return pad_heads(layout, per_head, MASKED_LOGIT)


def _scores(
    action_space: ActionSpace, actions: torch.Tensor, log_probs: torch.Tensor, canonical: torch.Tensor
) -> HeadScores:
    """Per-head dicts of ``actions [..., H]`` and their log-probs and normalised entropies."""
    return HeadScores(
        unstack_heads(action_space, actions),
        unstack_heads(action_space, log_prob_of(log_probs, actions)),
        unstack_heads(action_space, normalised_entropy(log_probs, canonical)),
    )
