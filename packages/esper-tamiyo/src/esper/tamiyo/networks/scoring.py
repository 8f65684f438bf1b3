"""The two legs of the factored policy, side by side: choose actions (rollout), score actions (update).

Both turn raw head logits into per-head actions, log-probs and normalised entropies through the
same canonicalisation and the same FP32 helpers, in the same order, so for equal logits, masks
and actions they return bit-identical numbers (the first PPO ratio is exactly 1). They are pure
functions over tensors: no module, no hidden RNG, no host sync, compile-friendly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch

from esper.tamiyo.contract import ActionSpace
from esper.tamiyo.networks.canonical import canonicalise_masks, with_op_slot_mask
from esper.tamiyo.networks.distributions import (
    greedy_actions,
    head_log_probs,
    log_prob_of,
    normalised_entropy,
    sample_actions,
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
    one-hot at its canonical action, and each other head is drawn in head order the same way.

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
    op_log_probs = head_log_probs(logits[op_head], masks[op_head], floors.get(op_head, 0.0))
    ops = greedy_actions(op_log_probs) if deterministic else sample_actions(op_log_probs, generator)
    conditioned = dict(masks) if slot_by_op is None else with_op_slot_mask(action_space, masks, slot_by_op, ops)
    canonical = canonicalise_masks(action_space, ops, conditioned)
    scores = HeadScores({}, {}, {})
    for head in action_space.head_names:
        if head == op_head:
            log_probs, chosen = op_log_probs, ops
        else:
            log_probs = head_log_probs(logits[head], canonical[head], floors.get(head, 0.0))
            chosen = greedy_actions(log_probs) if deterministic else sample_actions(log_probs, generator)
        _record(scores, head, chosen, log_probs, canonical[head])
    return scores


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
    canonical = canonicalise_masks(action_space, actions[action_space.op_head], masks)
    scores = HeadScores({}, {}, {})
    for head in action_space.head_names:
        log_probs = head_log_probs(logits[head], canonical[head], floors.get(head, 0.0))
        _record(scores, head, actions[head].long(), log_probs, canonical[head])
    return scores


def _record(scores: HeadScores, head: str, actions: torch.Tensor, log_probs: torch.Tensor, mask: torch.Tensor) -> None:
    scores.actions[head] = actions
    scores.log_probs[head] = log_prob_of(log_probs, actions)
    scores.entropies[head] = normalised_entropy(log_probs, mask)
