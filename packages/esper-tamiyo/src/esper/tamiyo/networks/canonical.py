"""Op-conditioned canonicalisation of head masks, shared by the rollout and update legs.

The heads are not autoregressive: every head's logits depend only on the trunk. The one coupling
is here: once the op is known, each head the op does not causally depend on
(``ActionSpace.relevance``) is restricted to a single canonical action, so its log-prob and
normalised entropy are exactly 0 on both legs and it adds nothing to the PPO ratio. The slot head
is first restricted to the slots that go with the op (the ``slot_by_op`` row); WAIT, for which no
head matters, keeps the first valid slot, which is what the generic rule gives with slot
placeholder 0.

Everything is vectorised over the leading dims, generic over the action space, with no host sync
and no data-dependent Python branch, so it compiles into one graph.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from esper.tamiyo.contract import ActionSpace, op_conditioned_slot_mask


def relevant_for(action_space: ActionSpace, head: str, ops: torch.Tensor) -> torch.Tensor:
    """Bool tensor shaped like ``ops``: True where ``head`` matters for that op.

    Built from comparisons against the static relevance table (no table upload to the device).
    """
    index = action_space.head_names.index(head)
    relevant_ops = [op for op in range(action_space.num_ops) if action_space.relevance[op][index]]
    relevant = torch.zeros_like(ops, dtype=torch.bool)
    for op in relevant_ops:
        relevant = relevant | (ops == op)
    return relevant


def with_op_slot_mask(
    action_space: ActionSpace, heads: Mapping[str, torch.Tensor], slot_by_op: torch.Tensor, ops: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``heads`` with the mask of ``action_space.slot_head`` replaced by the ``slot_by_op`` row of ``ops``.

    ``slot_by_op`` is ``[B, num_ops, S]`` and ``ops`` is ``[B]``.

    This is the rollout-leg view; the rollout buffer stores the returned slot mask so the update
    leg sees the same slot distribution.

    Raises:
        ValueError: the space has no slot head, ``heads`` lacks it, or ``slot_by_op`` does not fit it.
    """
    slot_head = action_space.slot_head
    if slot_head is None or slot_head not in heads:
        raise ValueError(
            f"slot_by_op was given but the action space has no slot head (slot_head={slot_head!r}, "
            f"masks for {list(heads)})"
        )
    slot = heads[slot_head]
    if slot_by_op.dim() != 3 or slot_by_op.shape[0] != slot.shape[0] or slot_by_op.shape[2] != slot.shape[-1]:
        raise ValueError(
            f"slot_by_op must be [B, num_ops, S] = [{slot.shape[0]}, num_ops, {slot.shape[-1]}], "
            f"got {list(slot_by_op.shape)}"
        )
    conditioned = dict(heads)
    conditioned[slot_head] = op_conditioned_slot_mask(slot_by_op, ops)
    return conditioned


def canonicalise_masks(
    action_space: ActionSpace, ops: torch.Tensor, masks: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Masks ``{head: bool [..., n]}`` with every head irrelevant to ``ops [...]`` made one-hot.

    The one valid action of an irrelevant head is ``ActionSpace.canonical_action(head, mask)``:
    its preferred placeholder when the mask allows it, else the first valid index. Relevant heads
    and the op head are returned unchanged. The slot mask must already be op-conditioned
    (:func:`with_op_slot_mask` on the rollout leg; stored that way for the update leg).
    """
    canonical: dict[str, torch.Tensor] = {}
    for head in action_space.head_names:
        mask = masks[head]
        if head == action_space.op_head:
            canonical[head] = mask
            continue
        placeholder = action_space.canonical_action(head, mask)
        one_hot = torch.arange(mask.shape[-1], device=mask.device) == placeholder.unsqueeze(-1)
        relevant = relevant_for(action_space, head, ops).unsqueeze(-1)
        canonical[head] = torch.where(relevant, mask, one_hot)
    return canonical
