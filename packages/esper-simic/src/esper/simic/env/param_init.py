"""Seeded parameter initialisation, so hosts and seeds never draw from torch's global RNG.

``reset_parameters_`` reproduces PyTorch's default initialisation of ``nn.Linear`` / ``nn.Conv2d``
(Kaiming-uniform with ``a = √5``, bias ``U(±1/√fan_in)``), of ``nn.Embedding`` (``N(0, 1)``) and
of the affine norms (weight 1, bias 0), but draws from an explicit ``torch.Generator``: the same
generator state gives the same network, whatever else the process did before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def reset_parameters_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every Linear/Conv/Embedding/norm layer of ``module`` in place from ``generator``; returns it."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    fan_in = layer.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        elif isinstance(layer, nn.Embedding):
            with torch.no_grad():
                nn.init.normal_(layer.weight, generator=generator)
        elif isinstance(layer, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and layer.weight is not None:
            with torch.no_grad():
                layer.weight.fill_(1.0)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


def build_seeded(factory: Callable[[], M], generator: torch.Generator) -> M:
    """Construct ``factory()`` and re-initialise it from ``generator``, keeping all-zero parameters at zero.

    Layers draw their default initialisation while being constructed; that happens inside
    ``torch.random.fork_rng`` so torch's global RNG state is left exactly as it was. Parameters
    that are all zero after construction (deliberately zeroed last layers, learned scalars that
    start at 0, norm biases) stay zero; everything else is redrawn from ``generator``.
    """
    with torch.random.fork_rng(devices=[]):
        module = factory()
    zeroed = [p for p in module.parameters() if not bool(p.detach().any())]
    reset_parameters_(module, generator)
    with torch.no_grad():
        for param in zeroed:
            param.zero_()
    return module


def zero_(layer: nn.Linear | nn.Conv2d) -> nn.Linear | nn.Conv2d:
    """Zero a layer's weight and bias in place: a residual branch ending in it starts as exactly 0."""
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()
    return layer
