"""Every head of the factored policy in one padded tensor ``[..., H, N]``: one op per step for all heads.

Both policy legs canonicalise, sample, gather the chosen actions' log-probs and compute entropies
for all H heads together: the per-head tensors (masks, log-probs ``[..., n_h]``) are laid side by
side in a ``[..., H, N]`` tensor, ``N = max n_h``, whose padding cells are invalid actions (mask
False, log-prob ``MASKED_LOGIT``, whose ``exp`` underflows to exactly 0: padding changes no
probability, is never sampled and never argmax). At rollout batch sizes every ATen op costs
microseconds of dispatch whatever its size, so op count, not FLOPs, is what ``get_action``
latency follows.

The constant tensors a layout needs (gather columns, relevance table, placeholders) are built once
per ``(action space, device)`` and cached: creating them per call would cost host-to-device copies
on GPU and a dozen ops on CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch

from esper.tamiyo.contract import ActionSpace


class PaddedLayout(NamedTuple):
    """Constants that map an action space's heads onto ``[..., H, N]`` (all on one device)."""

    width: int
    """N, the largest head size."""
    op_index: int
    """Row of the op head."""
    sizes: tuple[int, ...]
    """n_h of each head, in head order."""
    columns: torch.Tensor
    """int64 ``[H * N]``: column of ``cat([*heads, fill])`` ``[..., sum n_h + 1]`` each padded cell reads."""
    is_op: torch.Tensor
    """bool ``[H]``: True in the op head's row."""
    relevance: torch.Tensor
    """bool ``[num_ops, H]``: ``ActionSpace.relevance`` as a lookup table."""
    preferred: torch.Tensor
    """bool ``[H, N]``: one-hot of each head's preferred placeholder."""
    placeholders: torch.Tensor
    """int64 ``[H, 1]``: each head's preferred placeholder index."""
    positions: torch.Tensor
    """int64 ``[N]``: ``0 .. N-1``, to build one-hot rows."""


def padded_layout(space: ActionSpace, device: torch.device) -> PaddedLayout:
    """The layout of ``space`` on ``device``, cached outside ``torch.compile``.

    Under Dynamo it is rebuilt inline (the tensors become graph constants) instead of read from
    the cache, which Dynamo would have to guard on.
    """
    if torch.compiler.is_compiling():
        return _build_layout(space, device)
    return _cached_layout(space, device)


@functools.lru_cache(maxsize=64)
def _cached_layout(space: ActionSpace, device: torch.device) -> PaddedLayout:
    # Ordinary tensors even when first asked for inside get_action's inference mode: the update
    # leg's autograd saves them (index_select's index) and may not save inference tensors.
    with torch.inference_mode(False):
        return _build_layout(space, device)


def _build_layout(space: ActionSpace, device: torch.device) -> PaddedLayout:
    sizes = space.head_sizes
    width, fill = max(sizes), sum(sizes)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    columns = [start + j if j < n else fill for start, n in zip(starts, sizes, strict=True) for j in range(width)]

    def tensor(data: object, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(data, dtype=dtype, device=device)

    return PaddedLayout(
        width=width,
        op_index=space.op_index,
        sizes=sizes,
        columns=tensor(columns, torch.long),
        is_op=tensor([head == space.op_head for head in space.head_names], torch.bool),
        relevance=space.relevance_table(device),
        preferred=tensor([[j == p for j in range(width)] for p in space.placeholders], torch.bool),
        placeholders=tensor([[p] for p in space.placeholders], torch.long),
        positions=torch.arange(width, device=device),
    )


def pad_heads(layout: PaddedLayout, tensors: Sequence[torch.Tensor], fill: float | bool) -> torch.Tensor:
    """Per-head ``[..., n_h]`` tensors (head order) → ``[..., H, N]`` with ``fill`` in every padding cell.

    One ``cat`` (with a ``fill`` column appended) and one ``index_select``, whatever the number of
    heads; differentiable, so the update leg back-propagates through it.
    """
    first = tensors[0]
    fill_column = first.new_full((*first.shape[:-1], 1), fill)
    flat = torch.cat([*tensors, fill_column], dim=-1).index_select(-1, layout.columns)
    return flat.unflatten(-1, (-1, layout.width))


def unpad_heads(layout: PaddedLayout, padded: torch.Tensor) -> list[torch.Tensor]:
    """``[..., H, N]`` → per-head views ``[..., n_h]`` (head order), the inverse of :func:`pad_heads`."""
    return [row[..., :size] for row, size in zip(padded.unbind(-2), layout.sizes, strict=True)]


def canonicalise_padded(layout: PaddedLayout, ops: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Padded masks ``[..., H, N]`` with every head irrelevant to ``ops [...]`` made one-hot.

    The same rule as :func:`esper.tamiyo.networks.canonical.canonicalise_masks`, for all heads at
    once: the one valid action is the head's preferred placeholder if its mask allows it, else
    the first valid index. The op head is relevant to every op, so its row is unchanged.
    """
    preferred_ok = (masks & layout.preferred).any(dim=-1, keepdim=True)
    first_valid = masks.to(torch.int8).argmax(dim=-1, keepdim=True)
    canonical_index = torch.where(preferred_ok, layout.placeholders, first_valid)
    one_hot = layout.positions == canonical_index
    relevant = layout.relevance[ops.long()].unsqueeze(-1)
    return torch.where(relevant, masks, one_hot)


def unstack_heads(space: ActionSpace, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """``values [..., H]`` → ``{head: [...]}`` in head order, each contiguous (as the per-head code returned them)."""
    return dict(zip(space.head_names, values.movedim(-1, 0).contiguous().unbind(0), strict=True))
