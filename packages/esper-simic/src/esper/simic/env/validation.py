"""Validation with counterfactual contributions, all configurations evaluated in one stacked pass.

Configurations (the reference's, reduced to what rewards and observations use):

- ``main``: every slot at its current alpha;
- one leave-one-out configuration per *measured* seed (live, not fossilized, alpha > 0) with
  that slot's alpha forced to 0; the seed's contribution is ``acc(main) − acc(leave-one-out)``
  in accuracy points (a removal cost, not a clean causal effect);
- ``all_off``: every seed's alpha 0, fossilized ones included (the host alone);
- ``committed``: only fossilized seeds on (what the episode has kept for good).

Identical configurations are evaluated once (with no measured seed, all four collapse into
``main``). Each validation chunk runs through :meth:`MorphogeneticModel.forward_configs`, so the
extra configurations cost one wider forward, not a Python loop of forwards. Evaluation is in
eval mode (BatchNorm running statistics) under ``torch.inference_mode``.

A sample may hold several predictions (the text task's ``y`` is ``[N, T]``: one next token per
position); loss and accuracy are then per prediction (per token), so the loss is the mean
next-token cross-entropy and ``exp(loss)`` the perplexity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from esper.simic.env.model import MorphogeneticModel
from esper.tamiyo.contract import SeedStage


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """One epoch's validation metrics. Accuracies are percent in [0, 100]; losses are mean cross-entropy (per token
    for the text task)."""

    loss: float
    """Validation loss of the main configuration (NaN/Inf if the model diverged)."""
    accuracy: float
    """Validation accuracy of the main configuration."""
    contributions: dict[str, float]
    """``acc(main) − acc(slot's alpha = 0)`` for every measured seed, by slot id (accuracy points)."""
    all_off_accuracy: float
    """Accuracy with every seed's alpha at 0 (fossilized included): the host alone."""
    committed_accuracy: float
    """Accuracy with only fossilized seeds on."""
    num_configs: int
    """Distinct configurations evaluated (1 when no seed contributes)."""


def measured_slots(model: MorphogeneticModel) -> list[str]:
    """Slots whose seed gets a counterfactual this epoch: live (not fossilized) with alpha > 0."""
    return [s.slot_id for s in model.all_slots() if s.is_live and s.occupied and s.alpha > 0.0]


def build_configs(model: MorphogeneticModel) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Distinct alpha configurations as a table ``{slot_id: [alpha per config]}`` and ``{name: config index}``.

    Names: ``main``, ``all_off``, ``committed`` and ``loo:<slot_id>`` per measured seed.
    """
    measured = measured_slots(model)
    fossils = [s.slot_id for s in model.all_slots() if s.stage == SeedStage.FOSSILIZED]
    involved = measured + fossils
    current = {slot_id: model.slot(slot_id).alpha for slot_id in involved}
    wanted: dict[str, dict[str, float]] = {"main": current}
    for slot_id in measured:
        wanted[f"loo:{slot_id}"] = {**current, slot_id: 0.0}
    wanted["all_off"] = {slot_id: 0.0 for slot_id in involved}
    wanted["committed"] = {**current, **{slot_id: 0.0 for slot_id in measured}}
    keys: list[tuple[float, ...]] = []
    index: dict[str, int] = {}
    for name, alphas in wanted.items():
        key = tuple(alphas[slot_id] for slot_id in involved)
        if key not in keys:
            keys.append(key)
        index[name] = keys.index(key)
    table = {slot_id: [key[i] for key in keys] for i, slot_id in enumerate(involved)}
    return table, index


def validate(model: MorphogeneticModel, x: torch.Tensor, y: torch.Tensor, *, chunk_size: int) -> ValidationResult:
    """Evaluate ``model`` on ``x [N, C, H, W]`` / ``y [N]`` (or tokens ``x [N, T]`` / ``y [N, T]``) with all
    counterfactual configurations.

    Chunks of ``chunk_size`` samples are each expanded to ``K × chunk`` inside the model; the
    sums are read back to Python once at the end.
    """
    table, index = build_configs(model)
    num_configs = max(index.values()) + 1
    loss_sum = torch.zeros(num_configs, device=x.device)
    correct = torch.zeros(num_configs, dtype=torch.long, device=x.device)
    model.set_training(False)
    with torch.inference_mode():
        for start in range(0, x.shape[0], chunk_size):
            xb, yb = x[start : start + chunk_size], y[start : start + chunk_size]
            logits = model.forward_configs(xb, table)  # [K, n, classes] or [K, n, T, vocab]
            logits = logits.reshape(num_configs, -1, logits.shape[-1])  # [K, predictions, classes]
            targets = yb.reshape(1, -1).expand(num_configs, -1)
            loss_sum += F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(dim=1)
            correct += (logits.argmax(dim=-1) == targets).sum(dim=1)
    n = y.numel()
    return validation_result((loss_sum / n).tolist(), (100.0 * correct.double() / n).tolist(), index)


def validation_result(losses: list[float], accuracies: list[float], index: dict[str, int]) -> ValidationResult:
    """The result from each configuration's loss and accuracy (``index`` from :func:`build_configs`)."""
    num_configs = max(index.values()) + 1
    main = accuracies[index["main"]]
    return ValidationResult(
        loss=losses[index["main"]],
        accuracy=main,
        contributions={name[4:]: main - accuracies[i] for name, i in index.items() if name.startswith("loo:")},
        all_off_accuracy=accuracies[index["all_off"]],
        committed_accuracy=accuracies[index["committed"]],
        num_configs=num_configs,
    )
