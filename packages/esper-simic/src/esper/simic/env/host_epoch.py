"""One host epoch: shuffled minibatches from in-memory tensors, host and seeds on separate optimisers.

Per minibatch: forward through the morphogenetic model, cross-entropy, one backward; then the
host's gradients are clipped and stepped with the host optimiser, and every training seed's
gradients are clipped and stepped with that seed's own optimiser (separate clipping, as in the
reference). Seed gradient health is measured on the first minibatch before clipping (per-tensor
vanishing/exploding fractions); gradient finiteness is tracked on every minibatch without a host
sync, and all scalars are read back once at the end of the epoch.

Loss and accuracy are per prediction: one per sample for the image tasks, one per position for the
text task (logits ``[B, T, vocab]``, targets ``[B, T]``). A task with ``epoch_samples`` (text)
trains on that many samples per epoch, the first ones of the epoch's permutation. A task with an
``augmentation`` (cifar10) has every minibatch augmented, with draws from the episode's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from esper.simic.env.datasets import TaskData
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.slot import GradientStats, SeedSlot
from esper.tamiyo.contract import ACTIVE_STAGES

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
    seed_gradients: dict[str, GradientStats]
    """Gradient stats of every seed that trained this epoch, by slot id."""


def _clip(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip in place when ``max_norm > 0``; return the pre-clip global norm (a 0-d tensor, no sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else None)
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    return torch.nn.utils.get_total_norm(grads, foreach=True)


def _tensor_norms(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Per-tensor gradient norms ``[n_tensors]`` (float32)."""
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return torch.stack(norms) if norms else torch.zeros(0)


def train_epoch(
    model: MorphogeneticModel,
    data: TaskData,
    host_optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    generator: torch.Generator,
    host_max_grad_norm: float,
    seed_max_grad_norm: float,
) -> EpochStats:
    """Train ``model`` for one pass over ``data.train_x`` in minibatches of ``batch_size`` (last partial one dropped).

    The permutation comes from ``generator`` (CPU); with ``data.epoch_samples`` set, the pass covers
    only that many samples of it. Seeds in an active stage with an optimiser train alongside the
    host; frozen seed parameters (DOWN ramps) are skipped.
    """
    model.train()
    device = data.train_x.device
    order = torch.randperm(data.train_x.shape[0], generator=generator)[: data.epoch_samples].to(device)
    n = order.numel()
    x_all, y_all = data.train_x[order], data.train_y[order]
    num_batches = max(n // batch_size, 1)
    size = min(batch_size, n)
    host_params = [p for p in model.host.parameters() if p.requires_grad]
    seeds: list[tuple[SeedSlot, list[torch.nn.Parameter]]] = [
        (slot, slot.parameters_to_train())
        for slot in model.all_slots()
        if slot.optimizer is not None and slot.stage in ACTIVE_STAGES
    ]
    seeds = [(slot, params) for slot, params in seeds if params]
    finite = {slot.slot_id: torch.ones((), dtype=torch.bool, device=device) for slot, _ in seeds}
    first_norms: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for b in range(num_batches):
        xb, yb = x_all[b * size : (b + 1) * size], y_all[b * size : (b + 1) * size]
        if data.augmentation is not None:
            xb = data.augmentation(xb, generator)
        logits = model(xb)
        loss = F.cross_entropy(logits.flatten(0, -2), yb.flatten())
        host_optimizer.zero_grad(set_to_none=True)
        for slot, _ in seeds:
            slot.optimizer.zero_grad(set_to_none=True)  # type: ignore[union-attr]
        loss.backward()
        _clip(host_params, host_max_grad_norm)
        host_optimizer.step()
        for slot, params in seeds:
            per_tensor = _tensor_norms(params) if b == 0 else None
            norm = _clip(params, seed_max_grad_norm)
            if per_tensor is not None:
                first_norms[slot.slot_id] = (per_tensor, norm.detach())
            finite[slot.slot_id] &= torch.isfinite(norm)
            slot.optimizer.step()  # type: ignore[union-attr]
        loss_sum += loss.detach()
        correct += (logits.detach().argmax(dim=-1) == yb).sum()
    stats: dict[str, GradientStats] = {}
    for slot, _ in seeds:
        per_tensor, global_norm = first_norms[slot.slot_id]
        count = max(per_tensor.numel(), 1)
        stats[slot.slot_id] = GradientStats(
            norm=float(global_norm),
            finite=bool(finite[slot.slot_id]),
            vanishing_fraction=float((per_tensor < VANISHING_NORM).sum()) / count,
            exploding_fraction=float((per_tensor > EXPLODING_NORM).sum()) / count,
        )
    return EpochStats(
        train_loss=float(loss_sum) / num_batches,
        train_accuracy=100.0 * float(correct) / (num_batches * size * data.train_y[0].numel()),
        num_batches=num_batches,
        seed_gradients=stats,
    )
