"""Layers of the decoder-only transformer host and of its attention seeds, on ``[B, T, D]`` token activations.

Every layer is causal: the output at position ``t`` depends on positions ``<= t`` only, so the
next-token loss can never read the token it predicts. Attention is
``torch.nn.functional.scaled_dot_product_attention`` with ``is_causal`` (full context) or with a
boolean sliding-window mask (position ``t`` sees ``t − window + 1 .. t``); no dropout, so a
forward pass is a deterministic function of its input. Norms are LayerNorm over the feature
dimension (per token), so evaluating K counterfactual configurations stacked along the batch is
exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sliding_window_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """Bool ``[length, length]``: True where query ``t`` may attend key ``s`` (``t − window < s <= t``)."""
    positions = torch.arange(length, device=device)
    offset = positions[:, None] - positions[None, :]
    return (offset >= 0) & (offset < window)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention ``[B, T, D] → [B, T, D]``: fused QKV projection, SDPA, output projection.

    ``window = 0`` attends over the whole prefix; ``window = w > 0`` over the last ``w`` positions
    (``w = 1``: each token sees only itself, i.e. no context at all).
    """

    def __init__(self, width: int, num_heads: int, head_dim: int, window: int = 0) -> None:
        super().__init__()
        if width < 1 or num_heads < 1 or head_dim < 1 or window < 0:
            raise ValueError(
                f"need width, num_heads, head_dim >= 1 and window >= 0; got {width}, {num_heads}, {head_dim}, {window}"
            )
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.window = window
        self.qkv = nn.Linear(width, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each [B, heads, T, head_dim]
        if self.window:
            mask = sliding_window_mask(length, self.window, x.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(LN(x))``, then ``h + mlp(LN(h))`` with a GELU MLP of hidden width ``mlp_width``."""

    def __init__(self, width: int, num_heads: int, mlp_width: int, window: int = 0) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.attn_norm = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, num_heads, width // num_heads, window)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_width), nn.GELU(), nn.Linear(mlp_width, width))

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """The attention sub-layer ``x + attn(LN(x))``: the residual stream at the block's row-1 slot."""
        return x + self.attn(self.attn_norm(x))

    def second(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP sub-layer ``h + mlp(LN(h))``: its output is the block's output (row-0 slot)."""
        return x + self.mlp(self.mlp_norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class TokenEmbedding(nn.Module):
    """Token ids int64 ``[B, T]`` → token embedding + learned position embedding, float32 ``[B, T, D]``."""

    def __init__(self, vocab_size: int, context_length: int, width: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(context_length, width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
