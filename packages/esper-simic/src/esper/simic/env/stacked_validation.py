"""Validation of environments whose hosts have the same shape, every counterfactual configuration in one pass.

What :func:`esper.simic.env.validation.validate` computes for one model, computed for several: each
environment's configurations (``build_configs``: main, one leave-one-out per measured seed, all
off, committed) become rows of one stacked forward (``stacked.py``), each row with its
environment's parameters and BatchNorm statistics and its configuration's alpha per slot. A seed
whose alpha is 0 in a row passes that row through, as ``SeedSlot.forward`` does; a TRAINING seed
passes every row through (its value is the host's). Per-row losses and accuracies are read back
once and split into one :class:`ValidationResult` per environment.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.stacked import StackedModule
from esper.simic.env.stacked_epoch import SeedGroup, SlotSeeds, run_stacked, seed_key, seed_parameters
from esper.simic.env.validation import ValidationResult, build_configs, validation_result
from esper.tamiyo.contract import ACTIVE_STAGES, SeedStage

#: One row of the stacked validation: the environment and its configuration's alpha per slot.
Row = tuple[int, dict[str, float]]


def _rows(models: Sequence[MorphogeneticModel]) -> tuple[list[Row], list[dict[str, int]]]:
    """Every environment's configurations as rows, and each environment's ``{name: row within it}``."""
    rows: list[Row] = []
    indexes = []
    for env, model in enumerate(models):
        table, index = build_configs(model)
        for k in range(max(index.values()) + 1):
            alphas = {s.slot_id: table[s.slot_id][k] if s.slot_id in table else s.alpha for s in model.all_slots()}
            rows.append((env, alphas))
        indexes.append(index)
    return rows, indexes


def _seed_groups(models: Sequence[MorphogeneticModel], rows: list[Row], slot_id: str) -> list[SeedGroup]:
    """The rows of ``slot_id`` where a seed acts, grouped by seed (parameters stacked per row)."""
    grouped: dict[tuple[object, ...], list[int]] = {}
    for r, (env, alphas) in enumerate(rows):
        slot = models[env].slot(slot_id)
        acting = slot.seed is not None and slot.stage in ACTIVE_STAGES and slot.stage != SeedStage.TRAINING
        if acting and alphas[slot_id] != 0.0:
            grouped.setdefault(seed_key(slot), []).append(r)
    groups = []
    for members in grouped.values():
        slots = [models[rows[r][0]].slot(slot_id) for r in members]
        params = zip(*(seed_parameters(s) for s in slots), strict=True)
        tensors = [torch.stack([p.detach() for _, p in ps]) for ps in params]
        alpha = torch.tensor([rows[r][1][slot_id] for r in members], device=tensors[0].device if tensors else None)
        groups.append(SeedGroup(slots[0], members, tensors, alpha))
    return groups


def validate_stacked(
    models: Sequence[MorphogeneticModel], x: torch.Tensor, y: torch.Tensor, *, chunk_size: int
) -> list[ValidationResult]:
    """Validate ``models`` (hosts of one shape) on ``x``/``y`` in chunks of ``chunk_size`` samples."""
    template = models[0]
    rows, indexes = _rows(models)
    env_of_row = torch.tensor([env for env, _ in rows], device=x.device)
    for model in models:
        model.set_training(False)
    with torch.inference_mode():
        states = [{**m.host_parameters, **m.host_buffers} for m in models]
        tensors = {name: torch.stack([s[name].detach() for s in states])[env_of_row] for name in states[0]}
        host = StackedModule(template.host, tensors)
        stages = [host.child(f"blocks.{col}") for col in range(len(template.host.blocks))]
        head = host.child("head")
        groups = {
            slot_id: SlotSeeds(_seed_groups(models, rows, slot_id), len(rows), x.device) for slot_id in template.slots
        }
        loss_sum = torch.zeros(len(rows), device=x.device)
        correct = torch.zeros(len(rows), dtype=torch.long, device=x.device)
        for start in range(0, x.shape[0], chunk_size):
            xb, yb = x[start : start + chunk_size], y[start : start + chunk_size]
            logits = run_stacked(template, stages, head, groups, xb.expand(len(rows), *xb.shape))
            logits = logits.reshape(len(rows), -1, logits.shape[-1])
            targets = yb.reshape(1, -1).expand(len(rows), -1)
            loss_sum += F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(dim=1)
            correct += (logits.argmax(dim=-1) == targets).sum(dim=1)
    n = y.numel()
    losses, accuracies = (loss_sum / n).tolist(), (100.0 * correct.double() / n).tolist()
    results, first = [], 0
    for index in indexes:
        count = max(index.values()) + 1
        results.append(validation_result(losses[first : first + count], accuracies[first : first + count], index))
        first += count
    return results
