"""Host networks: blocks with two injection points each (slots ``r0c{i}`` and ``r1c{i}`` of block ``i``), then a head.

Slot grid: the column is the block, the row the position in it. Row 0 is the block's output (the
only row of the default 3-slot grid ``r0c0 r0c1 r0c2``); row 1 is inside the block, where its
first stage ends (``first`` in the list below; the rest is ``second``). A block runs ``first`` →
slot ``r1c{i}`` → ``second`` → slot ``r0c{i}``, so within a column the row-1 seed acts first and
the row-0 seed sees its output. Both rows of a column see the same activation shape. Hosts have 3
blocks, or as many as the grid's columns need (up to 16): extra blocks repeat the last block's
width, so the largest grid on every host is 2 rows × 16 columns.

- ``mlp``: flatten → three ``Linear → ReLU`` blocks (no ReLU in the impaired preset) → ``Linear``
  head. Slot activations ``[B, W_i]``. Row 1 is the pre-activation (after ``Linear``, before
  ``ReLU``); in the impaired preset, which has no ReLU, both rows see the same ``Linear`` output.
- ``cnn``: three ``Conv(k×k, no bias) → BatchNorm → ReLU`` blocks; a 2×2 max-pool opens blocks 1
  and 2 (while the map is at least 4 wide), so slots see ``[B, C_i, H_i, W_i]`` at 8/4/2 pixels on
  digits and 32/16/8 on CIFAR; head = global average pool → ``Linear``. The slot sits before the
  pool (the reference's PRE_POOL row). Row 1 is the pre-activation (after ``BatchNorm``, before ``ReLU``).
- ``transformer``: a decoder-only language model on byte tokens. Block 0 embeds the token ids
  (token + learned position embeddings) and runs the first pre-norm block (causal
  self-attention, then a GELU MLP; ``transformer_layers.py``); blocks 1 and 2 are further
  pre-norm blocks; head = final LayerNorm → ``Linear`` to the vocabulary. Slot activations are the
  residual stream ``[B, T, D]``; logits ``[B, T, vocab]``, one next-token prediction per position.
  Row 1 is the residual stream between the attention and the MLP sub-layers.

Each topology has a normal and an *impaired* preset. The impaired hosts lack an operation that a
seed can supply, so growing the right seed in the right slot rescues them:

- impaired cnn: 1×1 kernels and 2/4/8 channels, i.e. no spatial receptive field before the
  global pool (the reference's ``cifar_impaired`` idea). Measured on digits after 40 epochs:
  about 18–29 % alone; with a conv_heavy seed fossilized at r0c1, 57–78 %.
- impaired mlp: *linear* blocks (no ReLU) of widths 16/2/16, a linear model squeezed through 2
  dimensions. Seeds are the only source of non-linearity: a non-linear seed before the
  bottleneck (r0c0) learns a non-linear 2-d embedding. Measured: about 70–77 % alone; with an
  mlp seed fossilized at r0c0, 89–93 %; seeds after the bottleneck barely help. (Narrow ReLU
  hosts were tried first: digits is nearly linearly separable, so their accuracy was limited by
  dead units and bottleneck width, which shape-preserving seeds cannot fix, and seeds changed
  little.)
- impaired transformer: attention window 1, i.e. every token attends only to itself, so the
  host is a per-position "current byte → next byte" model with no context; an attention seed
  (``attention``, ``flex_attention``) supplies the context. Measured on the generated default
  corpus (env seed 0, next-byte accuracy after 40 epochs of 200 windows): impaired 29 %, normal
  27 % at the default host lr 0.02; 33 % for both at lr 0.1, and 33 % for the impaired host with
  an attention or flex_attention seed fossilized at r0c0. At this budget the host is still
  learning byte statistics and context barely matters yet; with 512 windows per epoch (lr 0.1,
  host alone) the normal host reaches 39 % and the impaired one 35 %.

On ``cifar10`` the normal cnn is the field's small CIFAR CNN instead: 32/64/128 channels with 3×3
kernels (94,762 parameters; ``TASK_HOST_PRESETS``); the impaired cnn stays as above.

The normal presets reach about 95 % (mlp, 4,522 parameters) and 97–98 % (cnn, 6,274) on digits
without seeds; the impaired ones have 1,292 (mlp) and 160 (cnn) parameters. All digits figures:
default ``EnvConfig`` optimiser settings, env seeds 0–3. Both transformer presets have 43,360
parameters (D = 32, 2 heads, MLP width 64, context 32, 256 byte tokens).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, cast

import torch
from torch import nn

from esper.simic.env.config import MAX_HOST_BLOCKS
from esper.simic.env.param_init import build_seeded
from esper.simic.env.transformer_layers import TokenEmbedding, TransformerBlock


@dataclass(frozen=True, slots=True)
class HostPreset:
    """Widths of one host variant."""

    widths: tuple[int, ...]
    """Features (mlp), channels (cnn) or MLP hidden width (transformer) of each block (one per grid column)."""
    kernel_size: int = 3
    """Conv kernel size (cnn only); the impaired cnn uses 1×1 kernels (no spatial receptive field)."""
    activation: bool = True
    """ReLU after each mlp block; the impaired mlp has none, so only seeds can add non-linearity."""
    normalised: tuple[int, ...] = ()
    """Indices of the mlp blocks that end in a LayerNorm over their features (after the ReLU, if any). A
    normalised block is non-linear and well conditioned already, so a ``norm`` seed at its output has
    nothing left to add (the ``digits-varied`` hosts normalise every block but the bottleneck)."""
    embed_dim: int = 32
    """Residual-stream width ``D`` of the transformer (transformer only): every slot sees ``[B, T, D]``."""
    num_heads: int = 2
    """Attention heads of each transformer block (transformer only; must divide ``embed_dim``)."""
    attention_window: int = 0
    """Positions a transformer token attends to, itself included (transformer only); 0 = the whole prefix.
    The impaired transformer uses 1: no context, which attention seeds can supply."""

    def __post_init__(self) -> None:
        if not 1 <= len(self.widths) <= MAX_HOST_BLOCKS or any(w < 1 for w in self.widths):
            raise ValueError(f"need 1 to {MAX_HOST_BLOCKS} positive widths, got {self.widths}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.num_heads < 1 or self.embed_dim < 1 or self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be a positive multiple of num_heads ({self.num_heads})"
            )
        if any(not 0 <= index < len(self.widths) for index in self.normalised):
            raise ValueError(f"normalised blocks must index the {len(self.widths)} blocks, got {self.normalised}")
        if self.attention_window < 0:
            raise ValueError(f"attention_window must be >= 0 (0 = the whole prefix), got {self.attention_window}")

    def with_blocks(self, num_blocks: int) -> HostPreset:
        """This preset with at least ``num_blocks`` blocks: missing blocks repeat the last block (its width, and
        its normalisation) without ever shrinking, so a grid with more columns gets a deeper host and the
        default grid the preset as it is."""
        last = len(self.widths) - 1
        extra = max(0, num_blocks - len(self.widths))
        if not extra:
            return self
        normalised = self.normalised + (tuple(range(last + 1, last + 1 + extra)) if last in self.normalised else ())
        return dataclasses.replace(self, widths=self.widths + (self.widths[-1],) * extra, normalised=normalised)


#: ``(topology, impaired) → preset`` (measurements in the module docstring).
HOST_PRESETS: Mapping[tuple[str, bool], HostPreset] = MappingProxyType(
    {
        ("mlp", False): HostPreset((32, 32, 32)),
        ("mlp", True): HostPreset((16, 2, 16), activation=False),
        ("cnn", False): HostPreset((8, 16, 32), kernel_size=3),
        ("cnn", True): HostPreset((2, 4, 8), kernel_size=1),
        ("transformer", False): HostPreset((64, 64, 64)),
        ("transformer", True): HostPreset((64, 64, 64), attention_window=1),
    }
)

#: ``(task, topology, impaired) → preset`` where a task needs a host other than ``HOST_PRESETS``'.
TASK_HOST_PRESETS: Mapping[tuple[str, str, bool], HostPreset] = MappingProxyType(
    {("cifar10", "cnn", False): HostPreset((32, 64, 128), kernel_size=3)}
)


def host_preset(task: str, topology: str, impaired: bool) -> HostPreset:
    """The width preset of ``topology`` on ``task``: the task's own one if it has one, else ``HOST_PRESETS``'."""
    return TASK_HOST_PRESETS.get((task, topology, impaired)) or HOST_PRESETS[(topology, impaired)]


class HostBlock(Protocol):
    """One host block, split at its row-1 slot: ``block(x) == block.second(block.first(x))``."""

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """Block input → the activation at the block's row-1 slot."""
        ...

    def second(self, x: torch.Tensor) -> torch.Tensor:
        """Row-1 activation → the block's output (its row-0 slot)."""
        ...


class SplitSequential(nn.Sequential):
    """A sequential block whose first ``split`` layers lead to its row-1 slot (mlp and cnn blocks).

    A subclass rather than two nested ``Sequential`` so parameter names and initialisation order
    stay those of one plain ``Sequential``.
    """

    def __init__(self, split: int, *layers: nn.Module) -> None:
        super().__init__(*layers)
        self.split = split

    def first(self, x: torch.Tensor) -> torch.Tensor:
        for layer in itertools.islice(self, self.split):
            x = layer(x)
        return x

    def second(self, x: torch.Tensor) -> torch.Tensor:
        for layer in itertools.islice(self, self.split, None):
            x = layer(x)
        return x


class EmbeddedTransformerBlock(nn.Sequential):
    """The transformer's block 0: ``(TokenEmbedding, TransformerBlock)``; the embedding runs in ``first``."""

    def first(self, x: torch.Tensor) -> torch.Tensor:
        return cast(TransformerBlock, self[1]).first(self[0](x))

    def second(self, x: torch.Tensor) -> torch.Tensor:
        return cast(TransformerBlock, self[1]).second(x)


class HostNetwork(nn.Module):
    """A host: ``blocks[i]`` produces the activations of slots ``r1c{i}`` (inside) and ``r0c{i}`` (output);
    ``head`` maps the last block's output to logits."""

    def __init__(
        self, topology: str, blocks: list[nn.Module], head: nn.Module, slot_shapes: tuple[tuple[int, ...], ...]
    ) -> None:
        super().__init__()
        for index, block in enumerate(blocks):
            if not (callable(getattr(block, "first", None)) and callable(getattr(block, "second", None))):
                raise TypeError(f"host block {index} ({type(block).__name__}) lacks the HostBlock stages first/second")
        self.topology = topology
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.slot_shapes = slot_shapes
        """Per-sample activation shape at each column's slots (both rows): ``(W,)`` for mlp, ``(C, H, W)`` for cnn,
        ``(T, D)`` for transformer (features last)."""

    def block(self, col: int) -> HostBlock:
        """Block ``col``, as its two stages around the row-1 slot."""
        return cast(HostBlock, self.blocks[col])

    @property
    def slot_positions(self) -> str:
        """The slots this host has, for error messages: ``r0c0..r1c{n-1}`` (2 rows × n columns)."""
        return f"r0c0..r1c{len(self.blocks) - 1} (2 rows x {len(self.blocks)} columns)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Seedless forward: images ``[B, C, H, W]`` → logits ``[B, num_classes]``, or token ids int64 ``[B, T]``
        → next-token logits ``[B, T, vocab]`` (transformer)."""
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    @functools.cached_property
    def num_params(self) -> int:
        """Trainable parameter count (counted once: a host's parameters never change within an episode, and the
        environment reads the count several times a step)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _image_shape(topology: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"the {topology} host needs images (input shape (C, H, W)), got input shape {input_shape}")
    return input_shape[0], input_shape[1], input_shape[2]


def _mlp(input_shape: tuple[int, ...], num_classes: int, preset: HostPreset) -> HostNetwork:
    input_shape = _image_shape("mlp", input_shape)
    in_features = input_shape[0] * input_shape[1] * input_shape[2]
    blocks: list[nn.Module] = []
    for i, width in enumerate(preset.widths):
        layers: list[nn.Module] = [nn.Flatten()] if i == 0 else []
        layers.append(nn.Linear(in_features, width))
        ending = [nn.ReLU()] if preset.activation else []
        ending += [nn.LayerNorm(width)] if i in preset.normalised else []
        blocks.append(SplitSequential(len(layers), *layers, *ending))
        in_features = width
    return HostNetwork("mlp", blocks, nn.Linear(in_features, num_classes), tuple((w,) for w in preset.widths))


def _cnn(input_shape: tuple[int, ...], num_classes: int, preset: HostPreset) -> HostNetwork:
    channels, height, width = _image_shape("cnn", input_shape)
    blocks: list[nn.Module] = []
    shapes: list[tuple[int, ...]] = []
    k = preset.kernel_size
    for i, out_channels in enumerate(preset.widths):
        layers: list[nn.Module] = []
        if i > 0 and min(height, width) >= 4:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        layers += [nn.Conv2d(channels, out_channels, k, padding=k // 2, bias=False), nn.BatchNorm2d(out_channels)]
        blocks.append(SplitSequential(len(layers), *layers, nn.ReLU()))
        shapes.append((out_channels, height, width))
        channels = out_channels
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return HostNetwork("cnn", blocks, head, tuple(shapes))


def _transformer(input_shape: tuple[int, ...], num_classes: int, preset: HostPreset) -> HostNetwork:
    """``num_classes`` is the vocabulary (token ids in, next-token logits out); ``input_shape`` is ``(T,)``."""
    if len(input_shape) != 1:
        raise ValueError(f"the transformer host needs token windows (input shape (T,)), got input shape {input_shape}")
    context_length, width = input_shape[0], preset.embed_dim
    blocks: list[nn.Module] = [
        TransformerBlock(width, preset.num_heads, mlp_width, preset.attention_window) for mlp_width in preset.widths
    ]
    blocks[0] = EmbeddedTransformerBlock(TokenEmbedding(num_classes, context_length, width), blocks[0])
    head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_classes))
    return HostNetwork("transformer", blocks, head, tuple((context_length, width) for _ in preset.widths))


_FACTORIES = MappingProxyType({"mlp": _mlp, "cnn": _cnn, "transformer": _transformer})


def build_host(
    topology: str,
    *,
    impaired: bool,
    input_shape: tuple[int, ...],
    num_classes: int,
    generator: torch.Generator,
    preset: HostPreset | None = None,
) -> HostNetwork:
    """A freshly initialised host (parameters drawn from ``generator``, on CPU).

    ``input_shape`` is one sample's shape: ``(C, H, W)`` images (mlp, cnn) or ``(T,)`` token windows
    (transformer, whose ``num_classes`` is the vocabulary). ``preset`` overrides the width preset of
    ``(topology, impaired)``.
    """
    if topology not in _FACTORIES:
        raise ValueError(f"unknown host topology {topology!r}; expected one of {list(_FACTORIES)}")
    chosen = preset or HOST_PRESETS[(topology, impaired)]
    factory = _FACTORIES[topology]
    return build_seeded(lambda: factory(input_shape, num_classes, chosen), generator)


def host_param_count(topology: str, preset: HostPreset, *, input_shape: tuple[int, ...], num_classes: int) -> int:
    """Trainable parameters of a host with ``preset``, counted on the meta device (no memory, no RNG)."""
    factory = _FACTORIES[topology]
    with torch.device("meta"):
        return factory(input_shape, num_classes, preset).num_params


def widened_preset(
    topology: str, preset: HostPreset, target_params: int, *, input_shape: tuple[int, ...], num_classes: int
) -> HostPreset:
    """``preset`` with every block width scaled so the host's parameter count is closest to ``target_params``.

    The widest block gets an integer width ``W`` and the others keep their proportions
    (``round(w · W / max(widths))``, at least 1); the parameter count grows with ``W``, so a
    bisection finds the smallest ``W`` reaching the target and the closer of it and ``W − 1`` wins.
    Used by the "same parameters, no growth" baseline: the host made as big as the grown network.
    """
    widest = max(preset.widths)

    def scaled(width: int) -> HostPreset:
        widths = tuple(max(1, round(w * width / widest)) for w in preset.widths)
        return dataclasses.replace(preset, widths=widths)

    def count(width: int) -> int:
        return host_param_count(topology, scaled(width), input_shape=input_shape, num_classes=num_classes)

    high = widest
    while count(high) < target_params:
        high *= 2
    first = bisect.bisect_left(range(1, high + 1), target_params, key=count) + 1
    best = min((w for w in (first - 1, first) if w >= 1), key=lambda w: abs(count(w) - target_params))
    return scaled(best)
