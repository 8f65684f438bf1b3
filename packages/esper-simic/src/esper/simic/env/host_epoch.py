"""One host epoch of one or several environments: shuffled minibatches, one fused update per minibatch.

Per minibatch: forward through the morphogenetic model, cross-entropy, one backward, then one fused
SGD update (``sgd.py``) over the host and every training seed, each module clipped by its own norm
(separate clipping, as in the reference). Seed gradient health is measured on the first minibatch
before clipping (per-tensor vanishing/exploding fractions); gradient finiteness is tracked on every
minibatch without a host sync, and all scalars are read back once at the end of the epoch.

Two ways to run the same maths (the host engines of ``engines.py`` choose):

- :func:`train_epoch`: one environment, its modules called as they are. Their parameters become
  views of the epoch's flat buffer and their gradients views of its flat gradient, so autograd
  accumulates straight into the buffer the fused update reads.
- :func:`train_epochs_stacked`: ``E`` environments whose hosts have the same shape, as one
  computation. The hosts run stacked (``stacked.py``: every parameter ``[E, ...]``, activations
  ``[E, B, ...]``); at each slot, the environments whose seeds have the same blueprint, blend and
  stage run that seed stacked on their rows, each with its own alpha, and the others pass their
  activation through. One backward and one update cover every host and seed. Each environment
  draws its minibatch order (and augmentation) from its own generator exactly as alone.

Loss and accuracy are per prediction: one per sample for the image tasks, one per position for the
text task (logits ``[B, T, vocab]``, targets ``[B, T]``). A task with ``epoch_samples`` (text)
trains on that many samples per epoch, the first ones of the epoch's permutation. A task with an
``augmentation`` (cifar10) has every minibatch augmented, with draws from the episode's generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from esper.simic.env.blending import blend, straight_through
from esper.simic.env.datasets import TaskData
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.sgd import FlatSGD, ModuleSGD
from esper.simic.env.slot import GradientStats, SeedSlot
from esper.simic.env.stacked import StackedModule
from esper.tamiyo.contract import ACTIVE_STAGES, AlphaAlgorithm, SeedStage

#: Per-tensor gradient norm below which a tensor counts as vanishing (reference 1e-7).
VANISHING_NORM = 1e-7
#: Per-tensor gradient norm above which a tensor counts as exploding (reference 10 × clip 1.0).
EXPLODING_NORM = 10.0

#: ``(minibatch inputs [E, B, ...], targets [E, B, ...]) → (losses [E], logits [E, B, ...])``.
ForwardFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True, slots=True)
class EpochStats:
    """What one training epoch measured."""

    train_loss: float
    """Mean minibatch cross-entropy (per token for the text task; NaN/Inf if any minibatch was non-finite)."""
    train_accuracy: float
    """Training accuracy over the epoch's minibatches (next-token accuracy for the text task), percent."""
    num_batches: int
    """Minibatches run."""
    seed_gradients: dict[str, GradientStats]
    """Gradient stats of every seed that trained this epoch, by slot id."""


@dataclass(frozen=True, slots=True)
class HostRun:
    """One environment's share of an epoch: its model, its host's optimiser state and its random stream."""

    model: MorphogeneticModel
    host_sgd: ModuleSGD
    generator: torch.Generator


def training_seeds(model: MorphogeneticModel) -> list[SeedSlot]:
    """The slots whose seed takes gradient steps this epoch, in slot order."""
    return [slot for slot in model.all_slots() if slot.trains]


#: Where each training seed's update lies in the epoch's :class:`FlatSGD`: ``(slot id, block, row, module)``.
SeedPlaces = list[tuple[str, int, int, int]]


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


def train_epoch(run: HostRun, data: TaskData, *, batch_size: int) -> EpochStats:
    """Train one environment's model for one pass over ``data.train_x`` (last partial minibatch dropped)."""
    model = run.model
    model.train()
    seeds = training_seeds(model)
    flat = FlatSGD([[[run.host_sgd, *(slot.sgd for slot in seeds if slot.sgd is not None)]]])
    params = [p for module in flat.blocks[0][0] for p in module.params]
    for index, param in enumerate(params):
        param.data = flat.row_tensor(0, 0, index).view_as(param)
        param.grad = flat.row_tensor(0, 0, index, grad=True).view_as(param)

    def forward(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(xb[0])
        return _loss(logits, yb[0]).unsqueeze(0), logits.unsqueeze(0)

    places = [(slot.slot_id, 0, 0, module) for module, slot in enumerate(seeds, start=1)]
    try:
        return _run_epoch([run], data, flat, forward, [places], batch_size=batch_size)[0]
    finally:
        for param in params:
            param.grad = None
        flat.write_back()


def _passes_through(slot: SeedSlot) -> bool:
    """The slot's output is its input this epoch (mirrors the shortcuts of ``SeedSlot.forward``)."""
    return (
        slot.seed is None or slot.stage not in ACTIVE_STAGES or (slot.stage != SeedStage.TRAINING and slot.alpha == 0.0)
    )


def _seed_key(slot: SeedSlot) -> tuple[object, ...]:
    """Seeds with equal keys (in the same slot of hosts of one shape) compute the same function of their parameters."""
    return (slot.blueprint, slot.algorithm, slot.gate is not None, slot.stage == SeedStage.TRAINING, slot.trains)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])


class _SeedGroup:
    """The seeds of one slot that run stacked: their rows among the environments, parameters, alphas."""

    def __init__(self, slots: list[SeedSlot], rows: list[int], block: int | None, device: torch.device) -> None:
        self.template = slots[0]
        self.rows = rows
        self.block = block
        """Block of the trained seeds in the epoch's FlatSGD (None: frozen, stacked once for the epoch)."""
        self.row_index = torch.tensor(rows, device=device)
        self.names = [name for name, _ in _seed_parameters(slots[0])]
        self.shapes = [p.shape for _, p in _seed_parameters(slots[0])]
        self.frozen = (
            None
            if block is not None
            else [_stack(list(ps)) for ps in zip(*(_param_list(s) for s in slots), strict=True)]
        )
        self.alpha = torch.tensor([s.alpha for s in slots], device=device)

    def bind(self, flat: FlatSGD) -> None:
        """Stack the group's parameters for the epoch: trained ones as leaves over the flat buffer."""
        if self.frozen is not None:
            tensors = self.frozen
        else:
            assert self.block is not None
            tensors = [_leaf(flat, self.block, i, shape) for i, shape in enumerate(self.shapes)]
        stacked = StackedModule(self.template, dict(zip(self.names, tensors, strict=True)))
        self.seed = stacked.child("seed")
        self.gate = stacked.child("gate") if self.template.gate is not None else None

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        """Slot output of the group's rows of ``h`` (``[G, B, ...]`` in, same out)."""
        slot, seed = self.template, self.seed
        if slot.stage == SeedStage.TRAINING:
            return straight_through(h, seed.call(h.detach()))
        alpha = self.alpha.view(-1, *([1] * (h.dim() - 1)))
        gate = self.gate.call(h) if self.gate is not None and slot.algorithm == AlphaAlgorithm.GATE else None
        return blend(slot.algorithm, h, seed.call(h), alpha, gate)


def _seed_parameters(slot: SeedSlot) -> list[tuple[str, torch.nn.Parameter]]:
    """The seed's and the gate's parameters, named from the slot, in the order of the slot's optimiser."""
    named = list(slot.seed.named_parameters(prefix="seed")) if slot.seed is not None else []
    return named + (list(slot.gate.named_parameters(prefix="gate")) if slot.gate is not None else [])


def _leaf(flat: FlatSGD, block: int, index: int, shape: Sequence[int]) -> torch.Tensor:
    """Parameter ``index`` of ``block`` stacked ``[R, *shape]``: a leaf over the flat buffer whose gradient
    accumulates in place into the flat gradient (one view each, so backward never scatters into the buffer)."""
    leaf = flat.stacked(block, index, shape).requires_grad_(True)
    leaf.grad = flat.stacked(block, index, shape, grad=True)
    return leaf


def _param_list(slot: SeedSlot) -> list[torch.nn.Parameter]:
    return [p for _, p in _seed_parameters(slot)]


class _StackedEpoch:
    """``E`` environments with hosts of one shape, laid out for one epoch of stacked training."""

    def __init__(self, runs: Sequence[HostRun]) -> None:
        models = [run.model for run in runs]
        self.template = models[0]
        device = next(self.template.host.parameters()).device
        blocks: list[list[list[ModuleSGD]]] = [[[run.host_sgd] for run in runs]]
        self.slot_groups: dict[str, list[_SeedGroup]] = {}
        self.places: list[SeedPlaces] = [[] for _ in runs]
        for slot_id in self.template.slots:
            grouped: dict[tuple[object, ...], list[int]] = {}
            for row, model in enumerate(models):
                slot = model.slot(slot_id)
                if not _passes_through(slot):
                    grouped.setdefault(_seed_key(slot), []).append(row)
            groups = []
            for rows in grouped.values():
                slots = [models[row].slot(slot_id) for row in rows]
                block = None
                if slots[0].trains:
                    block = len(blocks)
                    blocks.append([[s.sgd] for s in slots if s.sgd is not None])
                    for index, row in enumerate(rows):
                        self.places[row].append((slot_id, block, index, 0))
                groups.append(_SeedGroup(slots, rows, block, device))
            self.slot_groups[slot_id] = groups
        self.flat = FlatSGD(blocks)
        named = list(self.template.host.named_parameters())
        self.host_names = [name for name, _ in named]
        self.host_shapes = [p.shape for _, p in named]
        self.buffer_names = [name for name, _ in self.template.host.named_buffers()]
        own_buffers = [dict(model.host.named_buffers()) for model in models]
        self.buffers = {name: torch.stack([own[name] for own in own_buffers]) for name in self.buffer_names}
        self._own_buffers = own_buffers

    def bind(self) -> None:
        """Stack every parameter for the epoch, the trained ones as leaves over the flat buffer."""
        tensors = {
            name: _leaf(self.flat, 0, i, shape)
            for i, (name, shape) in enumerate(zip(self.host_names, self.host_shapes, strict=True))
        }
        tensors.update(self.buffers)
        host = StackedModule(self.template.host, tensors)
        self.blocks = [host.child(f"blocks.{col}") for col in range(len(self.template.host.blocks))]
        self.head = host.child("head")
        for groups in self.slot_groups.values():
            for group in groups:
                group.bind(self.flat)

    def _slot(self, slot_id: str, h: torch.Tensor) -> torch.Tensor:
        for group in self.slot_groups.get(slot_id, []):
            if len(group.rows) == h.shape[0]:
                h = group.apply(h)
            else:
                h = h.index_put((group.row_index,), group.apply(h[group.row_index]))
        return h

    def forward(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = xb
        for col, stage, slot_id in self.template.stage_plan():
            h = self.blocks[col].call(h, stage)
            if slot_id is not None:
                h = self._slot(slot_id, h)
        logits = self.head.call(h)
        per_prediction = F.cross_entropy(logits.flatten(0, -2), yb.flatten(), reduction="none")
        return per_prediction.view(len(xb), -1).mean(dim=1), logits

    def write_back(self) -> None:
        """Copy the stacked buffers (BatchNorm statistics) back into each environment's host."""
        for row, own in enumerate(self._own_buffers):
            for name in self.buffer_names:
                own[name].copy_(self.buffers[name][row])


def train_epochs_stacked(runs: Sequence[HostRun], data: TaskData, *, batch_size: int) -> list[EpochStats]:
    """Train the models of ``runs`` (hosts of one shape) for one epoch as one computation (module docstring)."""
    for run in runs:
        run.model.train()
    epoch = _StackedEpoch(runs)
    epoch.bind()
    try:
        return _run_epoch(runs, data, epoch.flat, epoch.forward, epoch.places, batch_size=batch_size)
    finally:
        epoch.flat.write_back()
        epoch.write_back()


def _minibatch_source(
    runs: Sequence[HostRun], data: TaskData, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Each environment's epoch order from its own generator: inputs ``[E, n, ...]``, targets, batches, size."""
    device = data.train_x.device
    orders = [torch.randperm(data.train_x.shape[0], generator=run.generator)[: data.epoch_samples] for run in runs]
    order = torch.stack(orders).to(device)
    n = order.shape[1]
    return data.train_x[order], data.train_y[order], max(n // batch_size, 1), min(batch_size, n)


def _run_epoch(
    runs: Sequence[HostRun],
    data: TaskData,
    flat: FlatSGD,
    forward: ForwardFn,
    places: Sequence[SeedPlaces],
    *,
    batch_size: int,
) -> list[EpochStats]:
    x_all, y_all, num_batches, size = _minibatch_source(runs, data, batch_size)
    device = x_all.device
    num_envs = len(runs)
    finite = torch.ones((), dtype=torch.bool, device=device)
    loss_sum = torch.zeros(num_envs, device=device)
    correct = torch.zeros(num_envs, dtype=torch.long, device=device)
    first_norms = tensor_norms = torch.zeros(0)
    for b in range(num_batches):
        xb, yb = x_all[:, b * size : (b + 1) * size], y_all[:, b * size : (b + 1) * size]
        if data.augmentation is not None:
            augment = data.augmentation
            xb = torch.stack([augment(xb[row], run.generator) for row, run in enumerate(runs)])
        flat.zero_grad()
        losses, logits = forward(xb, yb)
        losses.sum().backward()
        if b == 0:
            tensor_norms = flat.tensor_norms()
        norms = flat.step()
        if b == 0:
            first_norms = norms
        finite = finite & torch.isfinite(norms)
        loss_sum += losses.detach()
        correct += (logits.detach().argmax(dim=-1) == yb).flatten(1).sum(1)
    predictions = num_batches * size * data.train_y[0].numel()
    losses_out, correct_out = loss_sum.tolist(), correct.tolist()
    norms_out, tensors_out = first_norms.tolist(), tensor_norms.tolist()
    finite_out = finite.tolist() if finite.dim() else []
    return [
        EpochStats(
            train_loss=losses_out[row] / num_batches,
            train_accuracy=100.0 * correct_out[row] / predictions,
            num_batches=num_batches,
            seed_gradients={
                slot_id: _gradient_stats(flat, place, norms_out, finite_out, tensors_out)
                for slot_id, *place in places[row]
            },
        )
        for row in range(num_envs)
    ]


def _gradient_stats(
    flat: FlatSGD, place: list[int], norms: list[float], finite: list[bool], tensor_norms: list[float]
) -> GradientStats:
    """A seed's GradientStats from the epoch's read-back scalars (``place``: block, row, module)."""
    block, row, module = place
    segment = flat.segment(block, row, module)
    per_tensor = [tensor_norms[i] for i in flat.tensor_range(block, row, module)]
    count = max(len(per_tensor), 1)
    return GradientStats(
        norm=norms[segment],
        finite=bool(finite[segment]),
        vanishing_fraction=sum(norm < VANISHING_NORM for norm in per_tensor) / count,
        exploding_fraction=sum(norm > EXPLODING_NORM for norm in per_tensor) / count,
    )
