"""Output heads shared by every actor-critic trunk: one MLP per action head, V(s) and Q(s, op).

The recurrent and the feed-forward networks differ only in their trunk; both build their heads
and initialise them here, so an ablation changes exactly one thing. Initialisation follows
esper-lite: orthogonal with gain sqrt(2) and zero bias for hidden layers, gain 0.01 for the
policy output layers (near-uniform initial policy), gain 0.1 for the V and Q output layers (1.0
gave a large initial value loss, 0.01 left explained variance stuck).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from esper.tamiyo.contract import ActionSpace

HIDDEN_GAIN = math.sqrt(2.0)
POLICY_OUTPUT_GAIN = 0.01
VALUE_OUTPUT_GAIN = 0.1


class ActorCriticOutput(NamedTuple):
    """What a trunk + heads forward pass returns for inputs ``[B, T, ...]``."""

    logits: dict[str, torch.Tensor]
    """Raw (unmasked) logits per head, ``[B, T, size_h]``, in head order."""
    value: torch.Tensor
    """V(s) ``[B, T]``."""
    trunk: torch.Tensor
    """Trunk features ``[B, T, H]`` the heads read (input of the Q head)."""
    hidden: tuple[torch.Tensor, ...] | None
    """Recurrent state after the last step, or None for a feed-forward trunk."""


def init_linear(layer: nn.Linear, gain: float = HIDDEN_GAIN) -> nn.Linear:
    """Orthogonal weights with ``gain`` and zero bias, in place; returns ``layer``."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def policy_head(in_dim: int, hidden_dim: int, num_actions: int) -> nn.Sequential:
    """Linear → ReLU → Linear producing ``num_actions`` logits (output gain 0.01)."""
    return nn.Sequential(
        init_linear(nn.Linear(in_dim, hidden_dim)),
        nn.ReLU(),
        init_linear(nn.Linear(hidden_dim, num_actions), POLICY_OUTPUT_GAIN),
    )


def value_mlp(in_dim: int, hidden_dim: int) -> nn.Sequential:
    """Linear → LN → ReLU → Linear → LN → ReLU → Linear(1): the V and Q trunk (output gain 0.1)."""
    half = max(hidden_dim // 2, 1)
    return nn.Sequential(
        init_linear(nn.Linear(in_dim, hidden_dim)),
        nn.LayerNorm(hidden_dim),
        nn.ReLU(),
        init_linear(nn.Linear(hidden_dim, half)),
        nn.LayerNorm(half),
        nn.ReLU(),
        init_linear(nn.Linear(half, 1), VALUE_OUTPUT_GAIN),
    )


class ActorCriticHeads(nn.Module):
    """Policy heads, op-independent V(s) and auxiliary Q(s, op) over trunk features ``[..., in_dim]``.

    V(s) is the PPO baseline and never sees the op (an op-conditioned baseline biases the
    advantage). Q(s, op) reads *detached* trunk features, so its
    auxiliary loss trains only the Q head.
    """

    def __init__(self, action_space: ActionSpace, in_dim: int, head_hidden: int) -> None:
        super().__init__()
        if in_dim < 1 or head_hidden < 1:
            raise ValueError(f"in_dim and head_hidden must be >= 1, got {in_dim}, {head_hidden}")
        self.head_names = action_space.head_names
        self.num_ops = action_space.num_ops
        self.policy = nn.ModuleDict(
            {name: policy_head(in_dim, head_hidden, size) for name, size in action_space.sizes().items()}
        )
        self.value = value_mlp(in_dim, head_hidden)
        self.q = value_mlp(in_dim + self.num_ops, head_hidden)

    def forward(self, trunk: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Logits ``{head: [..., size_h]}`` and V(s) ``[...]``."""
        logits = {name: self.policy[name](trunk) for name in self.head_names}
        return logits, self.value(trunk).squeeze(-1)

    def q_value(self, trunk: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        """Q(s, op) ``[...]`` for trunk features ``[..., in_dim]`` and op indices ``[...]``."""
        op_one_hot = F.one_hot(ops.long(), self.num_ops).to(trunk.dtype)
        return self.q(torch.cat([trunk.detach(), op_one_hot], dim=-1)).squeeze(-1)


def head_width(trunk_width: int, *, name: str) -> int:
    """Hidden width of every head over a trunk ``trunk_width`` wide: half of it (the sizing all trunks share).

    Called before anything is built, so a bad width fails first; ``name`` is the constructor
    argument that set it, so the error says what to change.
    """
    if trunk_width < 2:
        raise ValueError(f"{name} must be >= 2 (heads are {name} // 2 wide), got {trunk_width}")
    return trunk_width // 2
