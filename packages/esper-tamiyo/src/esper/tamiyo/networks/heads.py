"""Output heads shared by every actor-critic trunk: one MLP per action head, V(s) and Q(s, op).

The recurrent and the feed-forward networks differ only in their trunk; both build their heads
and initialise them here, so an ablation changes exactly one thing. Initialisation follows
esper-lite: orthogonal with gain sqrt(2) and zero bias for hidden layers, gain 0.01 for the
policy output layers (near-uniform initial policy), gain 0.1 for the V and Q output layers (1.0
gave a large initial value loss, 0.01 left explained variance stuck).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

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


class FlatPolicy(NamedTuple):
    """The policy layers' parameters as four flat tensors that the per-head parameters are views of."""

    hidden_weight: torch.Tensor
    """``[H * head_hidden, in_dim]``: every head's first-layer weight, stacked in head order."""
    hidden_bias: torch.Tensor
    """``[H * head_hidden]``."""
    out_weight: torch.Tensor
    """``[H * N, head_hidden]``: head h's output weight in rows ``h*N .. h*N + n_h``, zero rows between."""
    out_bias: torch.Tensor
    """``[H * N]``, zero in the padding."""
    views: tuple[tuple[torch.Tensor, int], ...]
    """Each policy parameter with the address it had when flattened, to notice a broken alias."""


class ActorCriticHeads(nn.Module):
    """Policy heads, op-independent V(s) and auxiliary Q(s, op) over trunk features ``[..., in_dim]``.

    V(s) is the PPO baseline and never sees the op (an op-conditioned baseline biases the
    advantage). Q(s, op) reads *detached* trunk features, so its
    auxiliary loss trains only the Q head.

    The H policy MLPs run as two ops for all heads: one ``linear`` for every first layer and one
    ``baddbmm`` for every output layer, producing logits padded to ``[..., H, N]`` (``N`` the
    largest head). The per-head ``nn.Linear`` parameters (state-dict keys, optimiser state) are
    unchanged; like ``nn.LSTM.flatten_parameters``, they are made views into shared flat tensors
    (:class:`FlatPolicy`), so the rollout leg (inference mode) reads the fused weights without
    copying them, and optimiser steps, which update the parameters in place, update them too. With
    autograd on (the update leg) the same fused weights are concatenated from the parameters at
    call time (equal values, so both legs run the same ops on the same numbers: their log-probs
    stay bit-identical). If an alias is broken (a parameter's ``.data`` replaced), the rollout leg
    falls back to concatenating too; ``_apply`` (``.to()``, ``.half()``) re-flattens.
    """

    def __init__(self, action_space: ActionSpace, in_dim: int, head_hidden: int) -> None:
        super().__init__()
        if in_dim < 1 or head_hidden < 1:
            raise ValueError(f"in_dim and head_hidden must be >= 1, got {in_dim}, {head_hidden}")
        self.head_names = action_space.head_names
        self.head_sizes = action_space.head_sizes
        self.head_hidden = head_hidden
        self.width = max(self.head_sizes)
        self.num_ops = action_space.num_ops
        self.policy = nn.ModuleDict(
            {name: policy_head(in_dim, head_hidden, size) for name, size in action_space.sizes().items()}
        )
        self.value = value_mlp(in_dim, head_hidden)
        self.q = value_mlp(in_dim + self.num_ops, head_hidden)
        total = sum(self.head_sizes)
        starts = [sum(self.head_sizes[:i]) for i in range(len(self.head_sizes))]
        rows = [
            s + j if j < n else total for s, n in zip(starts, self.head_sizes, strict=True) for j in range(self.width)
        ]
        self.out_rows: torch.Tensor
        self.register_buffer("out_rows", torch.tensor(rows), persistent=False)
        self._flat: FlatPolicy | None = None
        self.flatten_policy()

    def forward(self, trunk: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Logits ``{head: [..., size_h]}`` (views of one padded tensor) and V(s) ``[...]``."""
        padded = self.padded_logits(trunk)
        logits = {
            name: row[..., :size]
            for name, row, size in zip(self.head_names, padded.unbind(-2), self.head_sizes, strict=True)
        }
        return logits, run_layers(self.value, trunk).squeeze(-1)

    def padded_logits(self, trunk: torch.Tensor) -> torch.Tensor:
        """Logits of every head ``[..., H, N]``; padding cells hold 0 (callers mask them)."""
        hidden_weight, hidden_bias, out_weight, out_bias = self._fused_weights()
        hidden = torch.relu(F.linear(trunk, hidden_weight, hidden_bias))
        heads, width = len(self.head_names), self.width
        per_head = hidden.reshape(-1, heads, self.head_hidden).transpose(0, 1)
        out = torch.baddbmm(out_bias.view(heads, 1, width), per_head, out_weight.view(heads, width, -1).transpose(1, 2))
        return out.transpose(0, 1).unflatten(0, trunk.shape[:-1])

    def _layers(self, index: int) -> list[nn.Linear]:
        """Layer ``index`` of every head's MLP, in head order (0: the hidden layer, 2: the output layer)."""
        return [cast(nn.Linear, cast(nn.Sequential, self.policy[name])[index]) for name in self.head_names]

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The flat tensors when no gradient is needed and the aliases hold, else the same values concatenated."""
        flat = self._flat
        if (
            not torch.compiler.is_compiling()  # first: Dynamo cannot trace is_inference_mode_enabled
            and torch.is_inference_mode_enabled()
            and flat is not None
            and all(param.data_ptr() == address for param, address in flat.views)
        ):
            return flat.hidden_weight, flat.hidden_bias, flat.out_weight, flat.out_bias
        firsts, outs = self._layers(0), self._layers(2)
        out_weight = torch.cat([*(layer.weight for layer in outs), outs[0].weight.new_zeros(1, self.head_hidden)])
        out_bias = torch.cat([*(layer.bias for layer in outs), outs[0].bias.new_zeros(1)])
        return (
            torch.cat([layer.weight for layer in firsts]),
            torch.cat([layer.bias for layer in firsts]),
            out_weight.index_select(0, self.out_rows),
            out_bias.index_select(0, self.out_rows),
        )

    @torch.no_grad()
    def flatten_policy(self) -> None:
        """Copy the policy parameters into fresh flat tensors and make each parameter a view of them.

        Parameter objects (and so optimiser references) are kept; only their storage changes.
        """
        with torch.inference_mode(False):
            firsts, outs = self._layers(0), self._layers(2)
            hidden_weight = torch.cat([layer.weight for layer in firsts])
            hidden_bias = torch.cat([layer.bias for layer in firsts])
            rows = self.out_rows.to(hidden_weight.device)
            out_weight = torch.cat([*(layer.weight for layer in outs), outs[0].weight.new_zeros(1, self.head_hidden)])[
                rows
            ]
            out_bias = torch.cat([*(layer.bias for layer in outs), outs[0].bias.new_zeros(1)])[rows]
            hh, width = self.head_hidden, self.width
            for i, (first, out, size) in enumerate(zip(firsts, outs, self.head_sizes, strict=True)):
                first.weight.data = hidden_weight[i * hh : (i + 1) * hh]
                first.bias.data = hidden_bias[i * hh : (i + 1) * hh]
                out.weight.data = out_weight[i * width : i * width + size]
                out.bias.data = out_bias[i * width : i * width + size]
            params = [p for layer in (*firsts, *outs) for p in (layer.weight, layer.bias)]
            views = tuple((p, p.data_ptr()) for p in params)
            self._flat = FlatPolicy(hidden_weight, hidden_bias, out_weight, out_bias, views)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], *args: Any, **kwargs: Any) -> ActorCriticHeads:
        """``nn.Module._apply`` (``.to()``, ``.float()``, ...), then re-flatten: a conversion copies each parameter."""
        super()._apply(fn, *args, **kwargs)
        self.flatten_policy()
        return self

    def q_value(self, trunk: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        """Q(s, op) ``[...]`` for trunk features ``[..., in_dim]`` and op indices ``[...]``."""
        op_one_hot = F.one_hot(ops.long(), self.num_ops).to(trunk.dtype)
        return self.q(torch.cat([trunk.detach(), op_one_hot], dim=-1)).squeeze(-1)


def run_layers(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)``, calling each layer's ``forward`` directly.

    The same ops in the same order (identical numbers), without ``nn.Module.__call__``'s per-call
    bookkeeping: the heads are ~40 small layers, and at rollout batch sizes that bookkeeping was a
    measurable share of a policy step. Hooks registered on these inner layers therefore do not
    run (hooks on the heads module itself still do).
    """
    for layer in layers:
        x = layer.forward(x)
    return x


def head_width(trunk_width: int, *, name: str) -> int:
    """Hidden width of every head over a trunk ``trunk_width`` wide: half of it (the sizing all trunks share).

    Called before anything is built, so a bad width fails first; ``name`` is the constructor
    argument that set it, so the error says what to change.
    """
    if trunk_width < 2:
        raise ValueError(f"{name} must be >= 2 (heads are {name} // 2 wide), got {trunk_width}")
    return trunk_width // 2
