"""SGD with momentum for the host and its seeds, stepped as one fused update per minibatch.

Each module that learns (the host; each seed together with its gate) keeps its own settings (learning
rate, momentum, weight decay, clipping norm) and its own momentum buffer in a :class:`ModuleSGD`.
An epoch gathers the modules that train into a :class:`FlatSGD`: every parameter and its momentum
laid out side by side in one flat ``[E, P]`` tensor (``E`` environments trained together, 1 in the
loop engine), with per-element learning rate, momentum and weight decay and a per-element index of
its module. One minibatch update is then a dozen tensor operations whatever the number of modules,
parameter tensors or environments:

- the gradient norm of each module of each environment (one ``index_add``);
- each module clipped by its own norm, as ``clip_grad_norm_`` would (``max_norm / (norm + 1e-6)``,
  capped at 1; a ``max_grad_norm`` of 0 does not clip);
- ``buf = momentum · buf + (clipped grad + weight_decay · p)``, ``p −= lr · buf``: PyTorch's SGD
  (no dampening, no Nesterov), whose first step ``buf = grad`` is this with a zero buffer.

Before, the host and every seed had a ``torch.optim.SGD`` and were clipped separately: about four
``step()`` calls, four clips and four ``zero_grad`` per minibatch, most of it PyTorch dispatch on
these small networks. The maths is the same up to float rounding, with one difference: PyTorch
skips a parameter that received no gradient (``grad is None``); here its gradient is zero, so its
momentum still moves it. That happens only to a seed whose blend amplitude is exactly 0 for a whole
epoch, which the lifecycle does not produce (a ramp ticks before the epoch trains). Parameters that
are frozen (a seed ramping down) take no step and keep their momentum, as in PyTorch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

#: Added to a gradient norm before dividing by it (``torch.nn.utils.clip_grad_norm_``'s constant).
CLIP_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class SGDSettings:
    """One module's optimiser settings."""

    lr: float
    momentum: float
    weight_decay: float = 0.0
    max_grad_norm: float = 0.0
    """Clip the module's gradient to this global L2 norm; 0 does not clip."""


class ModuleSGD:
    """SGD state of one module: its parameters (in a fixed order), settings and flat momentum buffer."""

    def __init__(self, params: Sequence[nn.Parameter], settings: SGDSettings) -> None:
        self.params = list(params)
        self.settings = settings
        self.momentum: torch.Tensor | None = None
        """Momentum of every parameter, flattened in order (``None`` until the first step or after a reset)."""

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)

    def reset(self) -> None:
        """Forget the momentum (a governor rollback restarts from restored weights)."""
        self.momentum = None

    def momentum_or_zeros(self) -> torch.Tensor:
        """The flat momentum buffer, zeros when there is none yet."""
        if self.momentum is not None:
            return self.momentum
        device = self.params[0].device if self.params else None
        return torch.zeros(self.numel, device=device)


#: One block's shape: rows, the numel of each parameter tensor of each module, each module's settings.
BlockKey = tuple[int, tuple[tuple[int, ...], ...], tuple[SGDSettings, ...]]


@dataclass(frozen=True)
class _Layout:
    """Where everything lies in the flat buffer of blocks of given shapes (cached: shapes repeat epoch after epoch).

    The buffer is a sequence of *chunks*, one per parameter tensor per row (block by block, tensor
    by tensor, row by row), so per-chunk sums are one ``segment_reduce`` and per-element values
    one ``repeat_interleave``: both several times faster on a CPU than a gather or ``index_add_``
    over every element.
    """

    chunks: list[list[tuple[int, int]]]
    """Per block, per parameter tensor: its start in the buffer and the numel of one row."""
    segment_start: list[int]
    tensor_start: list[int]
    num_tensors: int
    numel: int
    gather: torch.Tensor
    """Buffer position → position in the row-major concatenation of every module's parameters."""
    chunk_lengths: torch.Tensor
    chunk_segment: torch.Tensor
    """The segment (module of a row) of each chunk."""
    chunk_of_tensor: torch.Tensor
    """For each parameter tensor in :meth:`FlatSGD.tensor_norms` order (row by row), its chunk."""
    momentum_factor: torch.Tensor
    neg_lr: torch.Tensor
    decay: torch.Tensor | None
    max_norms: torch.Tensor
    clips: torch.Tensor


@functools.lru_cache(maxsize=512)
def _layout(blocks: tuple[BlockKey, ...], device: torch.device) -> _Layout:
    chunks: list[list[tuple[int, int]]] = []
    segment_start: list[int] = []
    tensor_start: list[int] = []
    settings: list[SGDSettings] = []
    gather: list[torch.Tensor] = []
    lengths: list[int] = []
    chunk_segment: list[int] = []
    chunk_of_tensor: dict[int, int] = {}
    start = num_tensors = 0
    for rows, module_numels, module_settings in blocks:
        numels = [n for module in module_numels for n in module]
        module_of = [m for m, module in enumerate(module_numels) for _ in module]
        row_size, modules = sum(numels), len(module_numels)
        segment_start.append(len(settings))
        tensor_start.append(num_tensors)
        row_ids = torch.arange(rows)
        block_chunks = []
        offset = 0
        for t, numel in enumerate(numels):
            block_chunks.append((start + rows * offset, numel))
            within = torch.arange(numel)
            gather.append((start + row_ids[:, None] * row_size + offset + within[None, :]).reshape(-1))
            for row in range(rows):
                chunk_of_tensor[num_tensors + row * len(numels) + t] = len(lengths)
                lengths.append(numel)
                chunk_segment.append(len(settings) + row * modules + module_of[t])
            offset += numel
        chunks.append(block_chunks)
        settings += list(module_settings) * rows
        num_tensors += rows * len(numels)
        start += rows * row_size
    chunk_lengths = torch.tensor(lengths, device=device)
    segments = torch.tensor(chunk_segment, device=device)
    per_chunk = torch.tensor([[s.lr, s.momentum, s.weight_decay] for s in settings], device=device)[segments]
    lr, momentum_factor, decay = per_chunk.repeat_interleave(chunk_lengths, dim=0, output_size=start).unbind(1)
    max_norms = torch.tensor([s.max_grad_norm for s in settings], device=device)
    return _Layout(
        chunks=chunks,
        segment_start=segment_start,
        tensor_start=tensor_start,
        num_tensors=num_tensors,
        numel=start,
        gather=torch.cat(gather).to(device),
        chunk_lengths=chunk_lengths,
        chunk_segment=segments,
        chunk_of_tensor=torch.tensor([chunk_of_tensor[i] for i in range(num_tensors)], device=device),
        momentum_factor=momentum_factor,
        neg_lr=-lr,
        decay=decay if any(s.weight_decay for s in settings) else None,
        max_norms=max_norms,
        clips=max_norms > 0,
    )


class FlatSGD:
    """Every module that trains this epoch, in one flat buffer of parameters, gradients and momentum.

    The modules come in *blocks*: ``blocks[b][r]`` lists the modules of row ``r`` of block ``b``, and
    all rows of a block list modules of the same sizes and settings (one row per environment: the
    loop engine has one block of one row, the host and its training seeds; the batched engine a block
    of the hosts of ``E`` environments and one per group of seeds trained together). Within a block
    the buffer is laid out parameter tensor by parameter tensor, each tensor's rows side by side, so
    parameter ``t`` of every row is one dense ``[R, *shape]`` view (:meth:`stacked`). A *segment* is
    one module of one row: it is clipped by its own norm.

    Construction copies parameters and momentum in; :meth:`write_back` points the modules'
    parameters at their trained values and hands them their momentum.
    """

    def __init__(self, blocks: Sequence[Sequence[Sequence[ModuleSGD]]]) -> None:
        self.blocks = [[list(row) for row in block] for block in blocks]
        device = self.blocks[0][0][0].params[0].device
        keys = []
        for block in self.blocks:
            template = [(m.numel, m.settings) for m in block[0]]
            if any([(m.numel, m.settings) for m in row] != template for row in block):
                raise ValueError("the rows of a block need modules of the same sizes and settings")
            numels = tuple(tuple(p.numel() for p in m.params) for m in block[0])
            keys.append((len(block), numels, tuple(m.settings for m in block[0])))
        layout = _layout(tuple(keys), device)
        self._layout = layout
        self._chunks = layout.chunks
        self.num_tensors = layout.num_tensors
        modules = [m for block in self.blocks for row in block for m in row]
        row_major = torch.cat([p.detach().reshape(-1) for m in modules for p in m.params])
        self.params = row_major[layout.gather]
        self.momentum = torch.cat([m.momentum_or_zeros() for m in modules])[layout.gather]
        self.grad = torch.zeros_like(self.params)

    # ----------------------------------------------------------------------------------- layout
    def stacked(self, block: int, index: int, shape: Sequence[int], *, grad: bool = False) -> torch.Tensor:
        """Parameter ``index`` of block ``block`` in every row, ``[R, *shape]`` (of :attr:`grad` if ``grad``)."""
        start, numel = self._chunks[block][index]
        rows = len(self.blocks[block])
        return (self.grad if grad else self.params)[start : start + rows * numel].view(rows, *shape)

    def row_tensor(self, block: int, row: int, index: int, *, grad: bool = False) -> torch.Tensor:
        """Parameter ``index`` of row ``row`` of block ``block``, flat (of :attr:`grad` if ``grad``)."""
        start, numel = self._chunks[block][index]
        return (self.grad if grad else self.params)[start + row * numel : start + (row + 1) * numel]

    def segment(self, block: int, row: int, module: int) -> int:
        """Index of module ``module`` of row ``row`` of block ``block`` among :meth:`step`'s norms."""
        return self._layout.segment_start[block] + row * len(self.blocks[block][0]) + module

    def tensor_range(self, block: int, row: int, module: int) -> range:
        """Indices of that module's parameter tensors among :meth:`tensor_norms`."""
        template = self.blocks[block][0]
        per_row = sum(len(m.params) for m in template)
        first = self._layout.tensor_start[block] + row * per_row + sum(len(m.params) for m in template[:module])
        return range(first, first + len(template[module].params))

    # ------------------------------------------------------------------------------------- step
    def zero_grad(self) -> None:
        self.grad.zero_()

    def _chunk_squares(self) -> torch.Tensor:
        """Sum of squared gradients of every chunk (one parameter tensor of one row)."""
        return torch.segment_reduce(self.grad.square(), "sum", lengths=self._layout.chunk_lengths)

    def step(self) -> torch.Tensor:
        """One fused clip-and-step of every segment; returns the pre-clip norm of each segment."""
        grad, layout = self.grad, self._layout
        with torch.no_grad():
            segment_sq = torch.zeros(layout.max_norms.numel(), device=grad.device, dtype=grad.dtype)
            norms = segment_sq.index_add_(0, layout.chunk_segment, self._chunk_squares()).sqrt()
            coef = torch.where(layout.clips, (layout.max_norms / (norms + CLIP_EPSILON)).clamp(max=1.0), 1.0)
            per_element = coef[layout.chunk_segment].repeat_interleave(layout.chunk_lengths, output_size=layout.numel)
            update = grad * per_element
            if layout.decay is not None:
                update.addcmul_(self.params, layout.decay)
            self.momentum.mul_(layout.momentum_factor).add_(update)
            self.params.addcmul_(self.momentum, layout.neg_lr)
        return norms

    def tensor_norms(self) -> torch.Tensor:
        """Pre-clip gradient norm of every parameter tensor (call before :meth:`step`)."""
        with torch.no_grad():
            return self._chunk_squares()[self._layout.chunk_of_tensor].sqrt()

    def write_back(self) -> None:
        """Point every module's parameters at their trained values (views) and hand it its momentum."""
        params = self.params.detach()
        for b, block in enumerate(self.blocks):
            for r, row in enumerate(block):
                index = 0
                for module in row:
                    momenta = []
                    for p in module.params:
                        start, numel = self._chunks[b][index]
                        p.data = params[start + r * numel : start + (r + 1) * numel].view_as(p)
                        momenta.append(self.momentum[start + r * numel : start + (r + 1) * numel])
                        index += 1
                    module.momentum = torch.cat(momenta) if len(momenta) != 1 else momenta[0]
