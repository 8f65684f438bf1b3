"""Seed architectures ("blueprints") per host topology, built at a slot's activation shape.

Every blueprint preserves the shape of its input and is *residual with a zero-initialised last
layer*: a freshly built seed computes exactly ``s(x) = x`` (bit for bit), so germinating and
blending it changes nothing until it has learned something. Residual branches are
pre-activation (norm → ReLU → layer, He et al. 2016) so the zero-initialised layer is the last
operation and still receives gradient. Norms inside seeds are GroupNorm / LayerNorm (per sample),
never BatchNorm, so stacked counterfactual evaluation is exact.

CNN (``[B, C, H, W]``): norm, attention (squeeze-excitation), depthwise, bottleneck, conv_small,
conv_light, conv_heavy. MLP (``[B, W]``): norm, attention (feature gating), lora, lora_large,
mlp_small, mlp. Transformer (``[B, T, D]``, every operation per token or causal): norm, lora,
lora_large and mlp as for the MLP host (applied to each token's features), attention (one extra
causal self-attention head over the whole prefix), flex_attention (the same head restricted to a
sliding window of the last :data:`FLEX_ATTENTION_WINDOW` tokens: the block-sparse masks
FlexAttention is for, written as an SDPA mask) and mlp_small, which on this host is the *gated
feature block* ``x + σ(W_g x) ⊙ W_p x`` (a GLU-style gated unit, Dauphin et al. 2017; the contract
has no separate id for it, and a gated unit of width D is the transformer's small MLP). Which
blueprints a topology offers comes from the contract
(``TOPOLOGY_BLUEPRINTS``); :data:`BLUEPRINT_BUILDERS` must cover exactly those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import nn

from esper.simic.env.param_init import build_seeded, zero_
from esper.simic.env.transformer_layers import CausalSelfAttention
from esper.tamiyo.contract import BlueprintAction, topology_blueprints

#: ``builder(slot_shape) -> module``; ``slot_shape`` is the per-sample activation shape.
BlueprintBuilder = Callable[[tuple[int, ...]], nn.Module]

#: Ranks of the MLP low-rank adapters.
LORA_RANK = 4
LORA_LARGE_RANK = 16
#: Tokens the transformer's flex_attention seed attends to (itself included).
FLEX_ATTENTION_WINDOW = 8


def group_count(channels: int) -> int:
    """GroupNorm groups: the largest of 32/16/8/4/2 dividing ``channels`` with >= 4 channels per group, else 1."""
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0 and channels // groups >= 4:
            return groups
    return 1


class Residual(nn.Module):
    """``x + branch(x)``; the branch ends in a zero-initialised layer."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class NormSeed(nn.Module):
    """``x + tanh(s) · (norm(x) − x)`` with a learned scalar ``s = 0`` at birth (identity)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.scale) * (self.norm(x) - x)


class FeatureGate(nn.Module):
    """Squeeze-excitation style gating ``x · (1 + tanh(fc2(ReLU(fc1(pool x)))))``; fc2 = 0 → identity.

    For images the squeeze is a global average pool and the gate is per channel; for feature
    vectors the gate is per feature. The gate lies in (0, 2): it can damp or amplify.
    """

    def __init__(self, width: int, spatial: bool) -> None:
        super().__init__()
        hidden = max(2, width // 4)
        self.spatial = spatial
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = zero_(nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3)) if self.spatial else x
        gate = 1.0 + torch.tanh(self.fc2(torch.relu(self.fc1(squeezed))))
        return x * (gate[:, :, None, None] if self.spatial else gate)


def _conv(cin: int, cout: int, k: int, *, groups: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=bias)


def _cnn_norm(shape: tuple[int, ...]) -> nn.Module:
    return NormSeed(nn.GroupNorm(group_count(shape[0]), shape[0]))


def _cnn_attention(shape: tuple[int, ...]) -> nn.Module:
    return FeatureGate(shape[0], spatial=True)


def _cnn_depthwise(shape: tuple[int, ...]) -> nn.Module:
    c = shape[0]
    return Residual(
        nn.Sequential(
            _conv(c, c, 3, groups=c, bias=False), nn.GroupNorm(group_count(c), c), nn.ReLU(), zero_(_conv(c, c, 1))
        )
    )


def _cnn_bottleneck(shape: tuple[int, ...]) -> nn.Module:
    c = shape[0]
    inner = max(4, c // 4)
    return Residual(
        nn.Sequential(
            _conv(c, inner, 1),
            nn.ReLU(),
            _conv(inner, inner, 3, bias=False),
            nn.GroupNorm(group_count(inner), inner),
            nn.ReLU(),
            zero_(_conv(inner, c, 1)),
        )
    )


def _cnn_conv(kernel: int, depth: int) -> BlueprintBuilder:
    def build(shape: tuple[int, ...]) -> nn.Module:
        c = shape[0]
        layers: list[nn.Module] = []
        for i in range(depth):
            conv = _conv(c, c, kernel, bias=False)
            layers += [nn.GroupNorm(group_count(c), c), nn.ReLU(), zero_(conv) if i == depth - 1 else conv]
        return Residual(nn.Sequential(*layers))

    return build


# The feature-vector builders below read the width from the last dimension, so they serve the MLP
# host (``(W,)``) and, token by token, the transformer (``(T, D)``).
def _mlp_norm(shape: tuple[int, ...]) -> nn.Module:
    return NormSeed(nn.LayerNorm(shape[-1]))


def _mlp_attention(shape: tuple[int, ...]) -> nn.Module:
    return FeatureGate(shape[0], spatial=False)


def _mlp_lora(rank: int) -> BlueprintBuilder:
    def build(shape: tuple[int, ...]) -> nn.Module:
        w = shape[-1]
        return Residual(nn.Sequential(nn.Linear(w, rank, bias=False), zero_(nn.Linear(rank, w, bias=False))))

    return build


def _mlp_expand(factor: int) -> BlueprintBuilder:
    def build(shape: tuple[int, ...]) -> nn.Module:
        w = shape[-1]
        return Residual(nn.Sequential(nn.Linear(w, factor * w), nn.GELU(), zero_(nn.Linear(factor * w, w))))

    return build


class GatedFeatures(nn.Module):
    """``x + σ(W_g x) ⊙ W_p x`` on the last dimension; ``W_p`` starts at zero, so the block is the identity at birth.

    The gate decides per feature how much of the projection to add; with ``W_p = 0`` the gate's own
    gradient is 0 at first and the projection learns first.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gate = nn.Linear(width, width)
        self.proj = zero_(nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.sigmoid(self.gate(x)) * self.proj(x)


def _transformer_gated(shape: tuple[int, ...]) -> nn.Module:
    return GatedFeatures(shape[-1])


def _transformer_attention(window: int) -> BlueprintBuilder:
    """One extra causal head of width D over ``LN(x)`` (``window`` tokens, 0 = whole prefix); output projection zero."""

    def build(shape: tuple[int, ...]) -> nn.Module:
        width = shape[-1]
        attention = CausalSelfAttention(width, num_heads=1, head_dim=width, window=window)
        zero_(attention.proj)
        return Residual(nn.Sequential(nn.LayerNorm(width), attention))

    return build


#: ``topology → {BlueprintAction → builder}``; keys equal the contract's ``TOPOLOGY_BLUEPRINTS``.
BLUEPRINT_BUILDERS: Mapping[str, Mapping[BlueprintAction, BlueprintBuilder]] = MappingProxyType(
    {
        "cnn": MappingProxyType(
            {
                BlueprintAction.NORM: _cnn_norm,
                BlueprintAction.ATTENTION: _cnn_attention,
                BlueprintAction.DEPTHWISE: _cnn_depthwise,
                BlueprintAction.BOTTLENECK: _cnn_bottleneck,
                BlueprintAction.CONV_SMALL: _cnn_conv(1, 1),
                BlueprintAction.CONV_LIGHT: _cnn_conv(3, 1),
                BlueprintAction.CONV_HEAVY: _cnn_conv(3, 2),
            }
        ),
        "mlp": MappingProxyType(
            {
                BlueprintAction.NORM: _mlp_norm,
                BlueprintAction.ATTENTION: _mlp_attention,
                BlueprintAction.LORA: _mlp_lora(LORA_RANK),
                BlueprintAction.LORA_LARGE: _mlp_lora(LORA_LARGE_RANK),
                BlueprintAction.MLP_SMALL: _mlp_expand(2),
                BlueprintAction.MLP: _mlp_expand(4),
            }
        ),
        "transformer": MappingProxyType(
            {
                BlueprintAction.ATTENTION: _transformer_attention(0),
                BlueprintAction.NORM: _mlp_norm,
                BlueprintAction.LORA: _mlp_lora(LORA_RANK),
                BlueprintAction.LORA_LARGE: _mlp_lora(LORA_LARGE_RANK),
                BlueprintAction.MLP_SMALL: _transformer_gated,
                BlueprintAction.MLP: _mlp_expand(4),
                BlueprintAction.FLEX_ATTENTION: _transformer_attention(FLEX_ATTENTION_WINDOW),
            }
        ),
    }
)


def build_blueprint(
    topology: str, blueprint: BlueprintAction | int, slot_shape: tuple[int, ...], generator: torch.Generator
) -> nn.Module:
    """A fresh seed module for ``slot_shape`` (``(W,)``, ``(C, H, W)`` or ``(T, D)``) with identity output at birth.

    Raises ``ValueError`` when ``blueprint`` is not offered by ``topology`` (the contract's list).
    """
    action = BlueprintAction(blueprint)
    if action not in topology_blueprints(topology):
        offered = [b.blueprint_id for b in topology_blueprints(topology)]
        raise ValueError(
            f"blueprint {action.blueprint_id!r} is not available for a {topology!r} host; offered: {offered}"
        )
    builder = BLUEPRINT_BUILDERS[topology][action]
    return build_seeded(lambda: builder(tuple(slot_shape)), generator)


class Gate(nn.Module):
    """Learned per-sample blend gate ``g(x) ∈ (0, 1)`` for the GATE style: pool → Linear → ReLU → Linear → sigmoid.

    Output ``[B, 1]`` for feature vectors and ``[B, 1, 1, 1]`` for images (broadcasts against the
    activation). Token sequences ``(T, D)`` get one gate per token, ``[B, T, 1]``, from that token's
    features: pooling over the sequence (as the reference does) would let every position's output
    depend on later tokens, i.e. on the tokens it must predict. Hidden width ``max(8, C/4)``
    (reference). The last layer starts at zero, so the gate starts at 0.5 for every sample.
    """

    def __init__(self, slot_shape: tuple[int, ...]) -> None:
        super().__init__()
        width = slot_shape[-1] if len(slot_shape) == 2 else slot_shape[0]
        hidden = max(8, width // 4)
        self.spatial = len(slot_shape) == 3
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = zero_(nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3)) if self.spatial else x
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(squeezed))))
        return gate[:, :, None, None] if self.spatial else gate


def build_gate(slot_shape: tuple[int, ...], generator: torch.Generator) -> Gate:
    """A fresh :class:`Gate` for ``slot_shape`` with seeded first-layer weights."""
    return build_seeded(lambda: Gate(tuple(slot_shape)), generator)
