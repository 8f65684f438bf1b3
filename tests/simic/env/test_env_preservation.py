"""Function preservation and gradient isolation for every blueprint and germination style, on every host."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from seed_walk import nudge_into_blending
from tiny_hosts import HOSTS, TOKENS, VOCAB, tiny_model

from esper.simic.env.slot import GradientStats
from esper.tamiyo.contract import GerminationStyle, SeedStage, topology_blueprints

CASES = [(topo, bp, style) for topo in HOSTS for bp in topology_blueprints(topo) for style in GerminationStyle]


def _batch(topology: str = "mlp", seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if topology == "transformer":
        return torch.randint(0, VOCAB, (16, TOKENS), generator=g), torch.randint(0, VOCAB, (16, TOKENS), generator=g)
    return torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per prediction (one per sample, or one per token for the transformer)."""
    return F.cross_entropy(logits.flatten(0, -2), y.flatten())


@pytest.mark.parametrize("topology,blueprint,style", CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_germinated_seed_is_bit_identical(topology: str, blueprint: int, style: GerminationStyle) -> None:
    model = tiny_model(topology)
    x, _ = _batch(topology)
    model.eval()
    with torch.no_grad():
        before = model(x)
    slot = model.slot("r0c1")
    slot.germinate(
        blueprint, style, tempo_epochs=3, blend_target=1.0, generator=torch.Generator().manual_seed(2), accuracy=0.0
    )
    assert slot.stage == SeedStage.GERMINATED
    with torch.no_grad():
        assert torch.equal(model(x), before)
    slot.tick(auto_advance=True)  # → TRAINING (straight-through)
    assert slot.stage == SeedStage.TRAINING
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert torch.equal(model(x).detach(), before)  # with grad: straight-through value is h exactly
    # Alpha forced to 0 (scalar and per-sample tensor) in BLENDING, and a fresh seed at any alpha.
    slot.record_gradients(GradientStats(1.0, True, 0.0, 0.0))
    slot.tick(auto_advance=True)
    assert slot.stage == SeedStage.BLENDING
    with torch.no_grad():
        assert torch.equal(model.forward_configs(x, {"r0c1": [0.0, 0.0]})[0], before)
        logits = model.forward_configs(x, {"r0c1": [0.0, 0.5, 1.0]})
        for k in range(3):
            assert torch.equal(logits[k], before)  # zero-initialised: s(h) == h exactly


@pytest.mark.parametrize("topology,blueprint,style", CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_training_seed_is_isolated(topology: str, blueprint: int, style: GerminationStyle) -> None:
    with_seed, without = tiny_model(topology), tiny_model(topology)
    slot = with_seed.slot("r0c0")
    slot.germinate(
        blueprint, style, tempo_epochs=3, blend_target=1.0, generator=torch.Generator().manual_seed(3), accuracy=0.0
    )
    slot.tick(auto_advance=True)
    assert slot.stage == SeedStage.TRAINING
    x, y = _batch(topology)
    with_seed.train()
    without.train()
    out_a, out_b = with_seed(x), without(x)
    assert torch.equal(out_a, out_b)
    _loss(out_a, y).backward()
    _loss(out_b, y).backward()
    for (name, pa), (_, pb) in zip(with_seed.host.named_parameters(), without.host.named_parameters(), strict=True):
        assert torch.equal(pa.grad, pb.grad), name
    seed_grads = [p.grad for p in slot.parameters_to_train() if p.grad is not None]
    assert seed_grads and any(bool(g.abs().sum() > 0) for g in seed_grads)


def test_blending_changes_output_once_seed_learns() -> None:
    model = tiny_model("mlp")
    slot = model.slot("r0c1")
    slot.germinate(11, GerminationStyle.LINEAR_ADD, 3, 1.0, torch.Generator().manual_seed(0), 0.0)
    nudge_into_blending(slot, 0.5)
    x, _ = _batch()
    model.eval()
    with torch.no_grad():
        logits = model.forward_configs(x, {"r0c1": [0.0, 1.0]})
    reference = copy.deepcopy(model)
    reference.slot("r0c1").seed = None
    with torch.no_grad():
        assert torch.equal(logits[0], reference(x))
        assert not torch.equal(logits[1], logits[0])
