"""Hosts of one shape trained as one stacked computation: the batched engine's :class:`StackedPart`.

The hosts run stacked (``stacked.py``: every parameter ``[E, ...]``, activations ``[E, B, ...]``).
At each slot, the environments whose seeds have the same blueprint, blend and stage (equal
:func:`seed_key`) run that seed stacked on their rows of the activation, each with its own alpha,
and the rest pass their activation through, as ``SeedSlot.forward`` would. The stacked parameters
are leaves over the epoch's flat buffer whose gradients accumulate in place into its flat
gradient, so the fused update (``sgd.py``) steps them with every other module. BatchNorm running
statistics are stacked for the epoch and copied back into each host at its end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from esper.simic.env.blending import blend, straight_through
from esper.simic.env.host_epoch import HostRun, SeedPlaces
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.sgd import FlatSGD, ModuleSGD
from esper.simic.env.slot import SeedSlot
from esper.simic.env.stacked import StackedModule
from esper.tamiyo.contract import ACTIVE_STAGES, AlphaAlgorithm, SeedStage


def _passes_through(slot: SeedSlot) -> bool:
    """The slot's output is its input this epoch (mirrors the shortcuts of ``SeedSlot.forward``)."""
    return (
        slot.seed is None or slot.stage not in ACTIVE_STAGES or (slot.stage != SeedStage.TRAINING and slot.alpha == 0.0)
    )


def seed_key(slot: SeedSlot) -> tuple[object, ...]:
    """Seeds with equal keys (in the same slot of hosts of one shape) compute the same function of their parameters."""
    return (slot.blueprint, slot.algorithm, slot.gate is not None, slot.stage == SeedStage.TRAINING, slot.trains)


class SeedGroup:
    """Seeds of one slot (equal :func:`seed_key`) run stacked on some rows of the activation.

    ``tensors`` are the seed's and gate's parameters stacked over those rows (in the order of
    :func:`seed_parameters`) and ``alpha`` their blend amplitudes ``[G]``.
    """

    def __init__(self, template: SeedSlot, rows: list[int], tensors: list[torch.Tensor], alpha: torch.Tensor) -> None:
        self.template = template
        self.rows = rows
        self.row_index = torch.tensor(rows, device=alpha.device)
        self.alpha = alpha
        names = (name for name, _ in seed_parameters(template))
        stacked = StackedModule(template, dict(zip(names, tensors, strict=True)))
        self.seed = stacked.child("seed")
        self.gate = stacked.child("gate") if template.gate is not None else None

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        """Slot output of the group's rows of ``h`` (``[G, B, ...]`` in, same out)."""
        slot, seed = self.template, self.seed
        if slot.stage == SeedStage.TRAINING:
            return straight_through(h, seed.call(h.detach()))
        alpha = self.alpha.view(-1, *([1] * (h.dim() - 1)))
        gate = self.gate.call(h) if self.gate is not None and slot.algorithm == AlphaAlgorithm.GATE else None
        return blend(slot.algorithm, h, seed.call(h), alpha, gate)


def seed_parameters(slot: SeedSlot) -> list[tuple[str, torch.nn.Parameter]]:
    """The seed's and the gate's parameters, named from the slot, in the order of the slot's optimiser."""
    named = list(slot.seed.named_parameters(prefix="seed")) if slot.seed is not None else []
    return named + (list(slot.gate.named_parameters(prefix="gate")) if slot.gate is not None else [])


def _leaf(flat: FlatSGD, block: int, index: int, shape: Sequence[int]) -> torch.Tensor:
    """Parameter ``index`` of ``block`` stacked ``[R, *shape]``: a leaf over the flat buffer whose gradient
    accumulates in place into the flat gradient (one view each, so backward never scatters into the buffer)."""
    leaf = flat.stacked(block, index, shape).requires_grad_(True)
    leaf.grad = flat.stacked(block, index, shape, grad=True)
    return leaf


class SlotSeeds:
    """One slot's seed groups over ``num_rows`` rows: each group runs on its rows, the other rows pass through.

    The pieces are concatenated and put back in row order by one index (rather than one
    ``index_put`` per group, each of which copies the whole activation forward and backward).
    """

    def __init__(self, groups: list[SeedGroup], num_rows: int, device: torch.device) -> None:
        self.groups = groups
        covered = [row for group in groups for row in group.rows]
        passing = sorted(set(range(num_rows)) - set(covered))
        self.whole = len(groups) == 1 and len(covered) == num_rows
        self.passing = torch.tensor(passing, device=device) if passing else None
        inverse = [0] * num_rows
        for position, row in enumerate(passing + covered):
            inverse[row] = position
        self.inverse = torch.tensor(inverse, device=device)

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        if not self.groups:
            return h
        if self.whole:
            return self.groups[0].apply(h)
        pieces = [] if self.passing is None else [h[self.passing]]
        pieces += [group.apply(h[group.row_index]) for group in self.groups]
        return torch.cat(pieces)[self.inverse]


def run_stacked(
    template: MorphogeneticModel,
    stages: Sequence[StackedModule],
    head: StackedModule,
    slots: Mapping[str, SlotSeeds],
    x: torch.Tensor,
) -> torch.Tensor:
    """The stacked morphogenetic forward: ``stages[col]`` is host block ``col``; at each slot its seed groups run
    on their rows and the other rows pass through (``[R, B, ...]`` inputs → ``[R, B, ...]`` logits)."""
    h = x
    for col, stage, slot_id in template.stage_plan():
        h = stages[col].call(h, stage)
        if slot_id is not None and slot_id in slots:
            h = slots[slot_id].apply(h)
    return head.call(h)


class StackedPart:
    """``E`` environments with hosts of one shape, laid out for one epoch of stacked training."""

    def __init__(self, runs: Sequence[HostRun]) -> None:
        self.runs = list(runs)
        models = [run.model for run in runs]
        self.template = models[0]
        self._device = next(self.template.host.parameters()).device
        self._blocks: list[list[list[ModuleSGD]]] = [[[run.host_sgd] for run in runs]]
        self._groups: dict[str, list[tuple[list[SeedSlot], list[int], int | None]]] = {}
        for slot_id in self.template.slots:
            grouped: dict[tuple[object, ...], list[int]] = {}
            for row, model in enumerate(models):
                slot = model.slot(slot_id)
                if not _passes_through(slot):
                    grouped.setdefault(seed_key(slot), []).append(row)
            groups = []
            for rows in grouped.values():
                slots = [models[row].slot(slot_id) for row in rows]
                block = None
                if slots[0].trains:
                    block = len(self._blocks)
                    self._blocks.append([[s.sgd] for s in slots if s.sgd is not None])
                groups.append((slots, rows, block))
            self._groups[slot_id] = groups
        named = list(self.template.host_parameters.items())
        self.host_names = [name for name, _ in named]
        self.host_shapes = [p.shape for _, p in named]
        self.buffer_names = list(self.template.host_buffers)
        self._own_buffers = [model.host_buffers for model in models]
        self.buffers = {name: torch.stack([own[name] for own in self._own_buffers]) for name in self.buffer_names}
        self.slot_groups: dict[str, SlotSeeds] = {}
        self._places: list[SeedPlaces] = [[] for _ in runs]

    def blocks(self) -> list[list[list[ModuleSGD]]]:
        return self._blocks

    def bind(self, flat: FlatSGD, first_block: int) -> None:
        """Stack every parameter for the epoch, the trained ones as leaves over the flat buffer."""
        tensors = {
            name: _leaf(flat, first_block, i, shape)
            for i, (name, shape) in enumerate(zip(self.host_names, self.host_shapes, strict=True))
        }
        tensors.update(self.buffers)
        host = StackedModule(self.template.host, tensors)
        self._stages = [host.child(f"blocks.{col}") for col in range(len(self.template.host.blocks))]
        self._head = host.child("head")
        for slot_id, groups in self._groups.items():
            bound = []
            for slots, rows, block in groups:
                named = seed_parameters(slots[0])
                if block is None:  # frozen: stacked once, no gradient
                    params = zip(*(seed_parameters(s) for s in slots), strict=True)
                    seed_tensors = [torch.stack([p.detach() for _, p in ps]) for ps in params]
                else:
                    seed_tensors = [_leaf(flat, first_block + block, i, p.shape) for i, (_, p) in enumerate(named)]
                    for index, row in enumerate(rows):
                        self._places[row].append((slot_id, first_block + block, index, 0))
                alpha = torch.tensor([s.alpha for s in slots], device=self._device)
                bound.append(SeedGroup(slots[0], rows, seed_tensors, alpha))
            self.slot_groups[slot_id] = SlotSeeds(bound, len(self.runs), self._device)

    def places(self) -> list[SeedPlaces]:
        return self._places

    def forward(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = run_stacked(self.template, self._stages, self._head, self.slot_groups, xb)
        per_prediction = F.cross_entropy(logits.flatten(0, -2), yb.flatten(), reduction="none")
        return per_prediction.view(len(xb), -1).mean(dim=1), logits

    def release(self) -> None:
        """Copy the stacked buffers (BatchNorm statistics) back into each environment's host."""
        for row, own in enumerate(self._own_buffers):
            for name in self.buffer_names:
                own[name].copy_(self.buffers[name][row])
