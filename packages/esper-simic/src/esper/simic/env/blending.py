"""How a seed's output is composed with the host activation at a slot (pure tensor functions).

``h`` is the host activation at the slot, ``s = seed(x_s)`` the seed output for seed input ``x_s``
(``h``, or ``h.detach()`` under isolation; the same values either way), ``alpha`` the blend
amplitude: a float, or a per-sample tensor broadcastable against ``h`` (``[B, 1]`` /
``[B, 1, 1, 1]`` / ``[B, 1, 1]`` for token sequences) during stacked counterfactual evaluation.

- ADD: ``(1 − α)·h + α·s`` (``torch.lerp``; exactly ``h`` at α = 0 and exactly ``s`` at α = 1).
- MULTIPLY ("valve"): ``h · (1 + α · tanh(s − h))``; bounded in ``[h(1−α), h(1+α)]``, identity
  when α = 0 or when the seed is still the identity (``s = h``).
- GATE: ADD with the effective amplitude ``clamp(α · g, 0, 1)`` where ``g`` is a learned
  per-sample gate in (0, 1); the policy only controls α.
- Straight-through (TRAINING, isolation): the output *value* is ``h`` exactly, but the gradient
  reaching the output also reaches ``s``, so the seed learns from the task loss "behind" the host
  without changing the forward pass or the host's gradients.
"""

from __future__ import annotations

import torch

from esper.tamiyo.contract import AlphaAlgorithm

Alpha = float | torch.Tensor


def blend_add(h: torch.Tensor, s: torch.Tensor, alpha: Alpha) -> torch.Tensor:
    """``(1 − α)·h + α·s``, computed as ``torch.lerp`` (exact at both ends)."""
    return torch.lerp(h, s, alpha)


def blend_multiply(h: torch.Tensor, s: torch.Tensor, alpha: Alpha) -> torch.Tensor:
    """``h · (1 + α · tanh(s − h))``."""
    return h * (1.0 + alpha * torch.tanh(s - h))


def blend_gate(h: torch.Tensor, s: torch.Tensor, alpha: Alpha, gate: torch.Tensor) -> torch.Tensor:
    """``lerp(h, s, clamp(α · gate, 0, 1))`` with ``gate`` ``[B, 1]``, ``[B, 1, 1, 1]`` or ``[B, T, 1]`` in (0, 1)."""
    return torch.lerp(h, s, (alpha * gate).clamp(0.0, 1.0))


def straight_through(h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``h + (s − s.detach())``: value ``h`` (bit-exact for finite ``s``), gradient also flows into ``s``."""
    return h + (s - s.detach())


def blend(
    algorithm: AlphaAlgorithm | int, h: torch.Tensor, s: torch.Tensor, alpha: Alpha, gate: torch.Tensor | None = None
) -> torch.Tensor:
    """Compose ``h`` and ``s`` with ``algorithm``; GATE needs ``gate``. Same shape as ``h``."""
    algo = AlphaAlgorithm(algorithm)
    if algo == AlphaAlgorithm.ADD:
        return blend_add(h, s, alpha)
    if algo == AlphaAlgorithm.MULTIPLY:
        return blend_multiply(h, s, alpha)
    if gate is None:
        raise ValueError("the GATE blend needs the gate values (a [B, 1, ...] tensor), got None")
    return blend_gate(h, s, alpha, gate)
