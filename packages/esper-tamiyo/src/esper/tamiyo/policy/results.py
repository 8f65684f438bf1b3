"""Frozen result types that cross the policy boundary (what ``get_action`` / ``evaluate_actions`` return)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

#: Recurrent state: a tuple of tensors whose dim 1 is the batch (``[layers, B, H]`` for an LSTM's
#: ``(h, c)``), or ``None`` for a feed-forward policy.
Hidden = tuple[torch.Tensor, ...] | None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """One inference step for a batch of B environments.

    All per-head dicts are keyed by the action space's head names, in head order.
    """

    actions: Mapping[str, torch.Tensor]
    """int64 ``[B]`` chosen index per head; irrelevant heads hold their canonical placeholder."""
    log_probs: Mapping[str, torch.Tensor]
    """float32 ``[B]`` log-prob of each chosen index (exactly 0 for irrelevant heads)."""
    entropies: Mapping[str, torch.Tensor]
    """float32 ``[B]`` entropy normalised by ln(#valid actions), in [0, 1]; 0 with one valid action."""
    value: torch.Tensor
    """float32 ``[B]`` op-independent state value V(s) (on the value normaliser's scale)."""
    hidden: Hidden
    """Recurrent state after this step (``None`` for feed-forward bundles)."""


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Re-evaluation of stored actions over sequences ``[B, T]`` with gradients enabled."""

    log_probs: Mapping[str, torch.Tensor]
    """float32 ``[B, T]`` per head."""
    entropies: Mapping[str, torch.Tensor]
    """float32 ``[B, T]`` normalised entropy per head."""
    value: torch.Tensor
    """float32 ``[B, T]`` V(s)."""
    q_value: torch.Tensor | None
    """float32 ``[B, T]`` auxiliary Q(s, op taken), trained on detached features; None if unsupported."""
    hidden: Hidden
    """Recurrent state after the last step."""
