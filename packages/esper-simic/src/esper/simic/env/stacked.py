"""One module of ``E`` environments called at once: parameters stacked ``[E, ...]``, inputs ``[E, B, ...]``.

The batched host engine trains environments whose hosts have the same shape as one computation. A
:class:`StackedModule` pairs a *template* module (any environment's: it supplies the structure and
the constants, never its parameter values) with every parameter and buffer of the ``E``
environments stacked along a leading dimension, and :meth:`StackedModule.call` runs the module on
``[E, B, ...]`` inputs:

- the layers the hosts and seeds are made of have a rule written with batched kernels: ``Linear``
  as one ``baddbmm``, ``Conv2d`` as one grouped convolution over ``E × channels``, ``BatchNorm2d``
  and ``GroupNorm`` over ``E × channels`` (running statistics update in place in the stacked
  buffers), ``LayerNorm`` with per-environment affine, pools and activations on a merged batch, and
  the containers and seed modules composed from those;
- any other module falls back to ``torch.func.vmap`` over ``functional_call``: correct for any
  module, but each call costs about 0.1 ms of dispatch on a CPU, so the rules cover the common layers.

Every rule computes, row by row, what the template's own ``forward`` computes, up to float rounding
(batched products sum in another order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from esper.simic.env.blueprints import FeatureGate, Gate, GatedFeatures, NormSeed, Residual
from esper.simic.env.hosts import EmbeddedTransformerBlock, SplitSequential
from esper.simic.env.transformer_layers import (
    CausalSelfAttention,
    TokenEmbedding,
    TransformerBlock,
    sliding_window_mask,
)

Rule = Callable[[nn.Module, "StackedModule", torch.Tensor], torch.Tensor]
_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Identity)


class StackedModule:
    """``template`` with its parameters and buffers for ``E`` environments (names relative to ``template``)."""

    def __init__(self, template: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
        self.template = template
        self.tensors = tensors
        self._children: dict[str, StackedModule] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def child(self, name: str) -> StackedModule:
        """The stacked submodule ``name`` of the template (built once: the tensors stay the same objects)."""
        cached = self._children.get(name)
        if cached is None:
            prefix = name + "."
            inner = {key[len(prefix) :]: value for key, value in self.tensors.items() if key.startswith(prefix)}
            cached = self._children[name] = StackedModule(self.template.get_submodule(name), inner)
        return cached

    def call(self, x: torch.Tensor, method: str = "forward") -> torch.Tensor:
        """``template.<method>`` of every environment on its row of ``x`` (``[E, B, ...]`` → ``[E, B, ...]``)."""
        module = self.template
        if method == "forward" and isinstance(module, _ELEMENTWISE):
            return module(x)
        rule = _RULES.get((type(module), method))
        if rule is not None:
            return rule(module, self, x)
        if method == "forward" and type(module) is nn.Sequential:
            return self.sequence(x, range(len(cast(nn.Sequential, module))))
        if method == "forward":
            return _vmapped(module, dict(self.tensors), x)
        return _vmapped(_Method(module, method), {f"inner.{k}": v for k, v in self.tensors.items()}, x)

    def sequence(self, x: torch.Tensor, children: range) -> torch.Tensor:
        """The children ``children`` (indices) of a sequential template, in order."""
        for index in children:
            x = self.child(str(index)).call(x)
        return x


class _Method(nn.Module):
    """Calls ``inner.<method>`` as its forward, so ``functional_call`` can run a method other than forward."""

    def __init__(self, inner: nn.Module, method: str) -> None:
        super().__init__()
        self.inner = inner
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, getattr(self.inner, self.method)(x))


def _vmapped(module: nn.Module, tensors: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    def one(state: dict[str, torch.Tensor], row: torch.Tensor) -> torch.Tensor:
        return functional_call(module, state, (row,), strict=True)

    return cast(torch.Tensor, vmap(one)(tensors, x))


def _per_env(value: torch.Tensor, x: torch.Tensor, trailing: int) -> torch.Tensor:
    """``value`` ``[E, *shape]`` reshaped to broadcast against ``x`` ``[E, B, ..., *shape]`` (``trailing`` dims)."""
    return value.view(value.shape[0], *([1] * (x.dim() - 1 - trailing)), *value.shape[1:])


def _linear(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    weight = s["weight"]
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    if cast(nn.Linear, module).bias is None:
        out = torch.bmm(flat, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(s["bias"].unsqueeze(1), flat, weight.transpose(1, 2))
    return out.view(*x.shape[:-1], weight.shape[1])


def _merge_channels(x: torch.Tensor) -> torch.Tensor:
    """``[E, B, C, H, W]`` → ``[B, E·C, H, W]``: each environment's channels side by side."""
    e, b, c = x.shape[:3]
    return x.transpose(0, 1).reshape(b, e * c, *x.shape[3:])


def _split_channels(y: torch.Tensor, num_envs: int) -> torch.Tensor:
    """Inverse of :func:`_merge_channels`."""
    b = y.shape[0]
    return y.view(b, num_envs, -1, *y.shape[2:]).transpose(0, 1)


def _conv2d(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    conv = cast(nn.Conv2d, module)
    e = x.shape[0]
    weight = s["weight"].reshape(-1, *s["weight"].shape[2:])
    bias = None if conv.bias is None else s["bias"].reshape(-1)
    y = F.conv2d(
        _merge_channels(x),
        weight,
        bias,
        conv.stride,
        cast(tuple[int, int], conv.padding),
        conv.dilation,
        conv.groups * e,
    )
    return _split_channels(y, e)


def _batch_norm(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    norm = cast(nn.BatchNorm2d, module)
    e = x.shape[0]
    if norm.training and norm.track_running_stats:
        s["num_batches_tracked"].add_(1)
    y = F.batch_norm(
        _merge_channels(x),
        s["running_mean"].view(-1) if norm.track_running_stats else None,
        s["running_var"].view(-1) if norm.track_running_stats else None,
        s["weight"].reshape(-1) if norm.affine else None,
        s["bias"].reshape(-1) if norm.affine else None,
        norm.training or not norm.track_running_stats,
        norm.momentum if norm.momentum is not None else 0.0,
        norm.eps,
    )
    return _split_channels(y, e)


def _group_norm(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    norm = cast(nn.GroupNorm, module)
    e = x.shape[0]
    weight = s["weight"].reshape(-1) if norm.affine else None
    bias = s["bias"].reshape(-1) if norm.affine else None
    return _split_channels(F.group_norm(_merge_channels(x), norm.num_groups * e, weight, bias, norm.eps), e)


def _layer_norm(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    norm = cast(nn.LayerNorm, module)
    trailing = len(norm.normalized_shape)
    y = F.layer_norm(x, norm.normalized_shape, None, None, norm.eps)
    if norm.weight is not None and norm.bias is not None:
        return torch.addcmul(_per_env(s["bias"], x, trailing), y, _per_env(s["weight"], x, trailing))
    if norm.weight is not None:
        y = y * _per_env(s["weight"], x, trailing)
    if norm.bias is not None:
        y = y + _per_env(s["bias"], x, trailing)
    return y


def _on_merged_batch(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    """A parameterless layer on ``[E·B, ...]``."""
    y = module(x.reshape(-1, *x.shape[2:]))
    return y.view(*x.shape[:2], *y.shape[1:])


def _flatten(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    flatten = cast(nn.Flatten, module)
    end = flatten.end_dim if flatten.end_dim < 0 else flatten.end_dim + 1
    return x.flatten(flatten.start_dim + 1, end)


def _residual(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return x + s.child("branch").call(x)


def _norm_seed(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    scale = torch.tanh(_per_env(s["scale"], x, 0))
    return x + scale * (s.child("norm").call(x) - x)


def _squeeze(spatial: bool, x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(3, 4)) if spatial else x


def _feature_gate(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    spatial = cast(FeatureGate, module).spatial
    hidden = torch.relu(s.child("fc1").call(_squeeze(spatial, x)))
    gate = 1.0 + torch.tanh(s.child("fc2").call(hidden))
    return x * (gate[..., None, None] if spatial else gate)


def _gate(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    spatial = cast(Gate, module).spatial
    gate = torch.sigmoid(s.child("fc2").call(torch.relu(s.child("fc1").call(_squeeze(spatial, x)))))
    return gate[..., None, None] if spatial else gate


def _gated_features(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return x + torch.sigmoid(s.child("gate").call(x)) * s.child("proj").call(x)


def _split_first(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return s.sequence(x, range(cast(SplitSequential, module).split))


def _split_second(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    split = cast(SplitSequential, module)
    return s.sequence(x, range(split.split, len(split)))


def _split_forward(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return s.sequence(x, range(len(cast(SplitSequential, module))))


def _embedding(module: nn.Module, s: StackedModule, ids: torch.Tensor) -> torch.Tensor:
    """Each environment's table as a block of one ``[E·V, D]`` table; ids shifted into their block."""
    weight = s["weight"]
    e, vocab = weight.shape[:2]
    offsets = (torch.arange(e, device=ids.device) * vocab).view(e, *([1] * (ids.dim() - 1)))
    return F.embedding(ids + offsets, weight.reshape(e * vocab, -1))


def _token_embedding(module: nn.Module, s: StackedModule, ids: torch.Tensor) -> torch.Tensor:
    length = ids.shape[-1]
    positions = s["positions.weight"][:, :length]
    return s.child("tokens").call(ids) + positions.view(
        positions.shape[0], *([1] * (ids.dim() - 2)), *positions.shape[1:]
    )


def _attention(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    """``CausalSelfAttention`` with the environments merged into the attention batch."""
    attention = cast(CausalSelfAttention, module)
    e, b, length = x.shape[:3]
    heads, head_dim = attention.num_heads, attention.head_dim
    qkv = s.child("qkv").call(x).reshape(e * b, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if attention.window:
        mask = sliding_window_mask(length, attention.window, x.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return s.child("proj").call(out.transpose(1, 2).reshape(e, b, length, heads * head_dim))


def _block_first(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return x + s.child("attn").call(s.child("attn_norm").call(x))


def _block_second(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return x + s.child("mlp").call(s.child("mlp_norm").call(x))


def _block_forward(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return _block_second(module, s, _block_first(module, s, x))


def _embedded_first(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return s.child("1").call(s.child("0").call(x), "first")


def _embedded_second(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return s.child("1").call(x, "second")


def _embedded_forward(module: nn.Module, s: StackedModule, x: torch.Tensor) -> torch.Tensor:
    return _embedded_second(module, s, _embedded_first(module, s, x))


_FORWARD_RULES: Mapping[type[nn.Module], Rule] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv2d,
    nn.BatchNorm2d: _batch_norm,
    nn.GroupNorm: _group_norm,
    nn.LayerNorm: _layer_norm,
    nn.MaxPool2d: _on_merged_batch,
    nn.AdaptiveAvgPool2d: _on_merged_batch,
    nn.Flatten: _flatten,
    nn.Embedding: _embedding,
    Residual: _residual,
    NormSeed: _norm_seed,
    FeatureGate: _feature_gate,
    Gate: _gate,
    GatedFeatures: _gated_features,
    TokenEmbedding: _token_embedding,
    CausalSelfAttention: _attention,
    SplitSequential: _split_forward,
    TransformerBlock: _block_forward,
    EmbeddedTransformerBlock: _embedded_forward,
}
#: ``(module type, method) → rule``; the host blocks' ``first``/``second`` stages have rules of their own.
_RULES: Mapping[tuple[type[nn.Module], str], Rule] = {
    **{(kind, "forward"): rule for kind, rule in _FORWARD_RULES.items()},
    (SplitSequential, "first"): _split_first,
    (SplitSequential, "second"): _split_second,
    (TransformerBlock, "first"): _block_first,
    (TransformerBlock, "second"): _block_second,
    (EmbeddedTransformerBlock, "first"): _embedded_first,
    (EmbeddedTransformerBlock, "second"): _embedded_second,
}
