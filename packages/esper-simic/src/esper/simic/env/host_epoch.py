"""One host epoch of one or several environments: shuffled minibatches, one fused update per minibatch.

Per minibatch: forward through the morphogenetic model, cross-entropy, one backward, then one fused
SGD update (``sgd.py``) over the host and every training seed, each module clipped by its own norm
(separate clipping, as in the reference). Seed gradient health is measured on the first minibatch
before clipping (per-tensor vanishing/exploding fractions); gradient finiteness is tracked on every
minibatch without a host sync, and all scalars are read back once at the end of the epoch.

An epoch trains one or more *parts* (the host engines of ``engines.py`` choose them), each a
group of environments with a forward of its own, and every minibatch runs one forward per part,
one backward over the sum of all their losses and one fused update for all of them (their
gradients are independent, so each environment's are what it would get alone):

- :class:`SinglePart`: one environment, its modules called as they are. Their parameters become
  views of the epoch's flat buffer and their gradients views of its flat gradient, so autograd
  accumulates straight into the buffer the fused update reads. :func:`train_epoch` trains one
  environment as one such part (the loop engine).
- ``stacked_epoch.StackedPart``: environments whose hosts have the same shape, as one stacked
  computation (``stacked.py``).

Each environment draws its minibatch order (and augmentation) from its own generator exactly as
when it trains alone.

Loss and accuracy are per prediction: one per sample for the image tasks, one per position for the
text task (logits ``[B, T, vocab]``, targets ``[B, T]``). A task with ``epoch_samples`` (text)
trains on that many samples per epoch, the first ones of the epoch's permutation. A task with an
``augmentation`` (cifar10) has every minibatch augmented, with draws from the episode's generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from esper.simic.env.datasets import TaskData
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.sgd import FlatSGD, ModuleSGD
from esper.simic.env.slot import GradientStats, SeedSlot

#: Per-tensor gradient norm below which a tensor counts as vanishing (reference 1e-7).
VANISHING_NORM = 1e-7
#: Per-tensor gradient norm above which a tensor counts as exploding (reference 10 × clip 1.0).
EXPLODING_NORM = 10.0


@dataclass(frozen=True, slots=True)
class EpochStats:
    """What one training epoch measured."""

    train_loss: float
    """Mean minibatch cross-entropy (per token for the text task; NaN/Inf if any minibatch was non-finite)."""
    train_accuracy: float
    """Training accuracy over the epoch's minibatches (next-token accuracy for the text task), percent."""
    num_batches: int
    """Minibatches run."""
    batch_losses: tuple[float, ...]
    """Cross-entropy of each minibatch, in order (what the engines' equivalence is tested on)."""
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


class EpochPart(Protocol):
    """Environments that run one forward together within an epoch (see the module docstring)."""

    runs: list[HostRun]

    def blocks(self) -> list[list[list[ModuleSGD]]]:
        """The part's modules as :class:`FlatSGD` blocks."""
        ...

    def bind(self, flat: FlatSGD, first_block: int) -> None:
        """Train from ``flat``, where the part's blocks start at ``first_block``."""
        ...

    def forward(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Minibatch inputs ``[R, B, ...]`` and targets of the part's rows → losses ``[R]``, logits ``[R, B, ...]``."""
        ...

    def places(self) -> list[SeedPlaces]:
        """Where each row's training seeds lie in the flat buffer (after :meth:`bind`)."""
        ...

    def release(self) -> None:
        """Undo what :meth:`bind` set up that outlives the epoch (after the buffer's ``write_back``)."""
        ...


class SinglePart:
    """One environment whose model runs as it is."""

    def __init__(self, run: HostRun) -> None:
        self.runs = [run]
        self.model = run.model
        self.seeds = training_seeds(run.model)
        self.modules = [run.host_sgd, *(slot.sgd for slot in self.seeds if slot.sgd is not None)]
        self.params = [p for module in self.modules for p in module.params]
        self.first_block = 0

    def blocks(self) -> list[list[list[ModuleSGD]]]:
        return [[self.modules]]

    def bind(self, flat: FlatSGD, first_block: int) -> None:
        self.first_block = first_block
        for index, param in enumerate(self.params):
            param.data = flat.row_tensor(first_block, 0, index).view_as(param)
            param.grad = flat.row_tensor(first_block, 0, index, grad=True).view_as(param)

    def forward(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(xb[0])
        loss = F.cross_entropy(logits.flatten(0, -2), yb[0].flatten())
        return loss.unsqueeze(0), logits.unsqueeze(0)

    def places(self) -> list[SeedPlaces]:
        return [[(slot.slot_id, self.first_block, 0, module) for module, slot in enumerate(self.seeds, start=1)]]

    def release(self) -> None:
        for param in self.params:
            param.grad = None


def train_epoch(run: HostRun, data: TaskData, *, batch_size: int) -> EpochStats:
    """Train one environment's model for one pass over ``data.train_x`` (last partial minibatch dropped)."""
    return train_parts([SinglePart(run)], data, batch_size=batch_size)[0]


def train_parts(parts: Sequence[EpochPart], data: TaskData, *, batch_size: int) -> list[EpochStats]:
    """One epoch of every environment of ``parts``; stats in the order of the parts' runs."""
    runs = [run for part in parts for run in part.runs]
    for run in runs:
        run.model.set_training(True)
    blocks: list[list[list[ModuleSGD]]] = []
    starts: list[int] = []
    for part in parts:
        starts.append(len(blocks))
        blocks += part.blocks()
    flat = FlatSGD(blocks)
    for part, start in zip(parts, starts, strict=True):
        part.bind(flat, start)
    try:
        return _run_epoch(runs, parts, data, flat, batch_size=batch_size)
    finally:
        flat.write_back()
        for part in parts:
            part.release()


def _minibatch_source(
    runs: Sequence[HostRun], data: TaskData, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Each environment's epoch order from its own generator: inputs ``[E, n, ...]``, targets, batches, size."""
    device = data.train_x.device
    orders = [torch.randperm(data.train_x.shape[0], generator=run.generator)[: data.epoch_samples] for run in runs]
    order = torch.stack(orders).to(device)
    n = order.shape[1]
    return data.train_x[order], data.train_y[order], max(n // batch_size, 1), min(batch_size, n)


def _forward_parts(parts: Sequence[EpochPart], xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every part's forward on its rows of the minibatch: losses ``[E]`` and logits ``[E, B, ...]``."""
    if len(parts) == 1:
        return parts[0].forward(xb, yb)
    losses, logits, start = [], [], 0
    for part in parts:
        end = start + len(part.runs)
        part_losses, part_logits = part.forward(xb[start:end], yb[start:end])
        losses.append(part_losses)
        logits.append(part_logits)
        start = end
    return torch.cat(losses), torch.cat(logits)


def _run_epoch(
    runs: Sequence[HostRun], parts: Sequence[EpochPart], data: TaskData, flat: FlatSGD, *, batch_size: int
) -> list[EpochStats]:
    places = [row for part in parts for row in part.places()]
    x_all, y_all, num_batches, size = _minibatch_source(runs, data, batch_size)
    num_envs = len(runs)
    batch_losses: list[torch.Tensor] = []
    batch_norms: list[torch.Tensor] = []
    batch_logits: list[torch.Tensor] = []
    tensor_norms = torch.zeros(0)
    for b in range(num_batches):
        xb, yb = x_all[:, b * size : (b + 1) * size], y_all[:, b * size : (b + 1) * size]
        if data.augmentation is not None:
            augment = data.augmentation
            xb = torch.stack([augment(xb[row], run.generator) for row, run in enumerate(runs)])
        flat.zero_grad()
        losses, logits = _forward_parts(parts, xb, yb)
        losses.sum().backward()
        if b == 0:
            tensor_norms = flat.tensor_norms()
        batch_norms.append(flat.step())
        batch_losses.append(losses.detach())
        batch_logits.append(logits.detach())
    # Per-minibatch bookkeeping is stacked and reduced once per epoch: fewer operator calls.
    targets = y_all[:, : num_batches * size]
    guesses = torch.stack(batch_logits, dim=1).argmax(dim=-1).view(targets.shape)
    correct_out = (guesses == targets).flatten(1).sum(1).tolist()
    predictions = num_batches * size * data.train_y[0].numel()
    norms = torch.stack(batch_norms)
    losses_out = torch.stack(batch_losses, dim=1).tolist()
    norms_out, tensors_out = norms[0].tolist(), tensor_norms.tolist()
    finite_out = torch.isfinite(norms).all(dim=0).tolist()
    return [
        EpochStats(
            train_loss=sum(losses_out[row]) / num_batches,
            batch_losses=tuple(losses_out[row]),
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
