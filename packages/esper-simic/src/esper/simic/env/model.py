"""The morphogenetic model: a host with a :class:`SeedSlot` at each enabled grid position.

:meth:`MorphogeneticModel.forward` runs the host stage by stage (each block's ``first`` stage, its
row-1 slot, its ``second`` stage, its row-0 slot; env/hosts.py) and passes each enabled slot's
activation through its slot, so several seeds in one column compose row 1 first, then row 0.

:meth:`MorphogeneticModel.forward_configs` evaluates K alpha configurations in one pass for
counterfactual validation: the batch is shared until the first slot whose alpha differs between
configurations, then repeated K times along the batch dimension with a per-sample alpha tensor at
every slot that varies (``[K·B, 1, ...]``, one trailing 1 per activation dimension: ``[K·B, 1]``
for the MLP, ``[K·B, 1, 1, 1]`` for the CNN, ``[K·B, 1, 1]`` for the transformer's ``[K·B, T, D]``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from esper.simic.env.config import NUM_SLOT_ROWS
from esper.simic.env.hosts import HostNetwork
from esper.simic.env.slot import SeedSlot, SlotSettings
from esper.tamiyo.contract import parse_slot_id


class MorphogeneticModel(nn.Module):
    """Host + slots. ``slots`` is keyed by slot id in slot-head order; slot ``r0c{i}`` follows block ``i`` and
    ``r1c{i}`` sits inside it."""

    def __init__(
        self, host: HostNetwork, slot_ids: Sequence[str], settings: SlotSettings, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__()
        self.host = host
        self.slots = nn.ModuleDict()
        self._position_slot: dict[tuple[int, int], str] = {}
        for slot_id in slot_ids:
            row, col = parse_slot_id(slot_id)
            if row >= NUM_SLOT_ROWS or col >= len(host.blocks):
                raise ValueError(
                    f"slot {slot_id!r} is not a position of this {host.topology} host: it has {host.slot_positions}"
                )
            self.slots[slot_id] = SeedSlot(slot_id, host.slot_shapes[col], host.topology, settings, device)
            self._position_slot[(row, col)] = slot_id

    @functools.cached_property
    def host_parameters(self) -> dict[str, nn.Parameter]:
        """The host's parameters by name, looked up once: a host never changes shape within an episode."""
        return dict(self.host.named_parameters())

    @functools.cached_property
    def host_buffers(self) -> dict[str, torch.Tensor]:
        """The host's buffers (BatchNorm statistics) by name, looked up once."""
        return dict(self.host.named_buffers())

    def set_training(self, mode: bool) -> None:
        """``train(mode)`` unless the model is in that mode already.

        Modules are only ever added in training mode (PyTorch's default), and every training epoch
        and every validation sets its mode first, so a model whose own flag says ``mode`` has every
        submodule in ``mode`` too; skipping the recursive call saves ~0.1 ms a call on these hosts.
        """
        if self.training != mode or (mode is False and any(m.training for m in self.slots.modules())):
            self.train(mode)

    def slot(self, slot_id: str) -> SeedSlot:
        """The slot with id ``slot_id``."""
        return self.slots[slot_id]  # type: ignore[return-value]

    def all_slots(self) -> list[SeedSlot]:
        """Slots in slot-head order."""
        return [s for s in self.slots.values()]  # type: ignore[misc]

    def stage_plan(self) -> Iterator[tuple[int, str, str | None]]:
        """The host's stages in forward order: block index, stage (``first``/``second``), id of the slot after it."""
        for col in range(len(self.host.blocks)):
            yield col, "first", self._position_slot.get((1, col))
            yield col, "second", self._position_slot.get((0, col))

    @functools.cached_property
    def _plan(self) -> list[tuple[Callable[[torch.Tensor], torch.Tensor], SeedSlot | None]]:
        """:meth:`stage_plan` as the stages' bound methods and the slots after them, built once (forward runs
        it every minibatch, and the host and slots never change within an episode)."""
        return [
            (getattr(self.host.block(col), stage), None if slot_id is None else self.slot(slot_id))
            for col, stage, slot_id in self.stage_plan()
        ]

    def _stages(self) -> Iterator[tuple[Callable[[torch.Tensor], torch.Tensor], str | None]]:
        """The host's stages in forward order, each with the id of the enabled slot after it (or None)."""
        for stage, slot in self._plan:
            yield stage, None if slot is None else slot.slot_id

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Host input (images ``[B, C, H, W]`` or token ids ``[B, T]``) → logits ``[B, num_classes]`` or
        ``[B, T, vocab]``, with every slot at its own alpha."""
        h = x
        for stage, slot in self._plan:
            h = stage(h)
            if slot is not None:
                h = slot(h)
        return self.host.head(h)

    def forward_configs(self, x: torch.Tensor, alpha_table: Mapping[str, Sequence[float]]) -> torch.Tensor:
        """Logits ``[K, B, ...]`` (``[K, B, num_classes]``, or ``[K, B, T, vocab]`` for the transformer) of K alpha
        configurations in one stacked pass.

        ``alpha_table[slot_id]`` gives that slot's alpha in each of the K configurations (all the
        same length K); slots not in the table use their own alpha in every configuration.
        Configurations share computation up to the first slot whose alphas differ. Call it in
        eval mode: in train mode BatchNorm would pool batch statistics across configurations.
        """
        lengths = {len(v) for v in alpha_table.values()}
        if len(lengths) > 1:
            raise ValueError(f"alpha_table columns differ in length: {sorted(lengths)}")
        num_configs = lengths.pop() if lengths else 1
        batch = x.shape[0]
        expanded = False
        h = x
        for stage, slot_id in self._stages():
            h = stage(h)
            if slot_id is None:
                continue
            alphas = alpha_table.get(slot_id)
            if alphas is None or len(set(alphas)) == 1:
                h = self.slots[slot_id](h, None if alphas is None else float(alphas[0]))
                continue
            if not expanded:
                h = h.repeat(num_configs, *([1] * (h.dim() - 1)))
                expanded = True
            per_sample = torch.tensor(alphas, dtype=h.dtype, device=h.device).repeat_interleave(batch)
            h = self.slots[slot_id](h, per_sample.view(-1, *([1] * (h.dim() - 1))))
        logits = self.host.head(h)
        if not expanded:
            return logits.unsqueeze(0).expand(num_configs, *logits.shape)
        return logits.view(num_configs, batch, *logits.shape[1:])
