"""Counterfactual validation on a constructed case whose accuracies are known by hand."""

from __future__ import annotations

import torch
from torch import nn

from esper.simic.env.hosts import HostNetwork, SplitSequential
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.slot import GradientStats, SlotSettings
from esper.simic.env.validation import build_configs, validate
from esper.tamiyo.contract import BlueprintAction, GerminationStyle, SeedStage


class Shift(nn.Module):
    """A seed that adds a fixed vector to the 2 logits: ``s(h) = h + shift``."""

    def __init__(self, shift: tuple[float, float]) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(shift))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.shift


def _model() -> MorphogeneticModel:
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
        head.bias.zero_()
    blocks = [SplitSequential(1, nn.Flatten()), SplitSequential(1, nn.Identity()), SplitSequential(1, nn.Identity())]
    host = HostNetwork("mlp", blocks, head, ((2,), (2,), (2,)))
    return MorphogeneticModel(host, ("r0c0", "r0c1", "r0c2"), SlotSettings(training_dwell=0))


def _holding(model: MorphogeneticModel, slot_id: str, shift: tuple[float, float]) -> None:
    """Germinate, then swap in the known seed and drive it to HOLDING at alpha 1."""
    slot = model.slot(slot_id)
    slot.germinate(BlueprintAction.NORM, GerminationStyle.LINEAR_ADD, 0, 1.0, torch.Generator(), 0.0)
    slot.seed = Shift(shift)
    slot.tick(True)
    slot.record_gradients(GradientStats(1.0, True, 0.0, 0.0))
    slot.tick(True)
    assert slot.stage == SeedStage.HOLDING and slot.alpha == 1.0


def test_contributions_all_off_and_committed_match_hand_counts() -> None:
    # Every sample is class 1 with logits (0, v); class 1 wins iff v + shift_1 > shift_0.
    v = torch.tensor([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    x = torch.stack([torch.zeros(10), v], dim=1).view(10, 1, 1, 2)
    y = torch.ones(10, dtype=torch.long)
    model = _model()
    _holding(model, "r0c0", (2.0, 0.0))  # helps the wrong class
    _holding(model, "r0c1", (0.0, 3.0))  # helps the right class
    _holding(model, "r0c2", (0.0, 1.0))
    fossil = model.slot("r0c2")
    fossil.record_contribution(1.0)
    assert fossil.fossilize()

    result = validate(model, x, y, chunk_size=4)  # several chunks on purpose
    # main: v + 4 > 2 → 8/10; without r0c0: v + 4 > 0 → 10/10; without r0c1: v + 1 > 2 → 5/10;
    # all off: v > 0 → 6/10; only the fossil: v + 1 > 0 → 7/10.
    assert result.accuracy == 80.0
    assert result.contributions == {"r0c0": -20.0, "r0c1": 30.0}
    assert result.all_off_accuracy == 60.0
    assert result.committed_accuracy == 70.0
    assert result.num_configs == 5


def test_no_measured_seed_means_one_config() -> None:
    model = _model()
    x = torch.randn(6, 1, 1, 2)
    y = torch.zeros(6, dtype=torch.long)
    table, index = build_configs(model)
    assert table == {} and set(index.values()) == {0}
    result = validate(model, x, y, chunk_size=100)
    assert result.num_configs == 1 and result.contributions == {}
    assert result.all_off_accuracy == result.accuracy == result.committed_accuracy


def test_training_seed_is_not_measured() -> None:
    model = _model()
    slot = model.slot("r0c1")
    slot.germinate(BlueprintAction.NORM, GerminationStyle.LINEAR_ADD, 3, 1.0, torch.Generator(), 0.0)
    slot.tick(True)
    assert slot.stage == SeedStage.TRAINING
    table, _ = build_configs(model)
    assert table == {}
