"""Stacked calls (``env/stacked.py``) compute, environment by environment, what each module computes alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from esper.simic.env.blueprints import BLUEPRINT_BUILDERS, build_blueprint, build_gate
from esper.simic.env.hosts import HostNetwork, HostPreset, build_host
from esper.simic.env.stacked import StackedModule

E = 3
INPUTS = {"mlp": (1, 8, 8), "cnn": (1, 8, 8), "transformer": (6,)}
CLASSES = {"mlp": 10, "cnn": 10, "transformer": 32}
PRESETS = {"transformer": HostPreset((8, 8, 8), embed_dim=8, num_heads=2)}


def _inputs(topology: str, batch: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    if topology == "transformer":
        return torch.randint(0, CLASSES["transformer"], (E, batch, *INPUTS[topology]), generator=generator)
    return torch.randn(E, batch, *INPUTS[topology], generator=generator)


def _stack(modules: list[nn.Module]) -> StackedModule:
    state = [dict(list(m.named_parameters()) + list(m.named_buffers())) for m in modules]
    tensors = {name: torch.stack([s[name].detach().clone() for s in state]) for name in state[0]}
    return StackedModule(modules[0], tensors)


def _hosts(topology: str, impaired: bool) -> list[HostNetwork]:
    preset = None
    if topology == "transformer":
        preset = PRESETS["transformer"] if not impaired else HostPreset((8, 8, 8), embed_dim=8, attention_window=1)
    return [
        build_host(
            topology,
            impaired=impaired,
            input_shape=INPUTS[topology],
            num_classes=CLASSES[topology],
            generator=torch.Generator().manual_seed(seed),
            preset=preset,
        )
        for seed in range(E)
    ]


@pytest.mark.parametrize("impaired", [False, True])
@pytest.mark.parametrize("topology", ["mlp", "cnn", "transformer"])
def test_stacked_host_stages_match_each_host(topology: str, impaired: bool) -> None:
    """Every block's two stages and the head, in train mode (BatchNorm uses and updates batch statistics)."""
    hosts = _hosts(topology, impaired)
    stacked = _stack(hosts)
    alone = [copy.deepcopy(h) for h in hosts]
    for h in hosts + alone:
        h.train()
    x = _inputs(topology)
    expected = []
    for row, host in enumerate(alone):
        h = x[row]
        for col in range(len(host.blocks)):
            h = host.block(col).second(host.block(col).first(h))
        expected.append(host.head(h))
    h = x
    for col in range(len(hosts[0].blocks)):
        block = stacked.child(f"blocks.{col}")
        h = block.call(block.call(h, "first"), "second")
    torch.testing.assert_close(stacked.child("head").call(h), torch.stack(expected), rtol=1e-5, atol=1e-5)
    for name, value in stacked.tensors.items():
        if "running" in name or "num_batches" in name:
            after = torch.stack([dict(a.named_buffers())[name] for a in alone])
            torch.testing.assert_close(value, after, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("topology", "blueprint"),
    [(topology, blueprint) for topology, builders in BLUEPRINT_BUILDERS.items() for blueprint in builders],
)
def test_stacked_seeds_and_gates_match_each_seed(topology: str, blueprint: object) -> None:
    """Every blueprint of every topology, with weights drawn away from their identity initialisation."""
    shape = _hosts(topology, False)[0].slot_shapes[0]
    seeds = [build_blueprint(topology, blueprint, shape, torch.Generator().manual_seed(s)) for s in range(E)]
    gates = [build_gate(shape, torch.Generator().manual_seed(s)) for s in range(E)]
    with torch.no_grad():
        for module in seeds + gates:
            for p in module.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    x = torch.randn(E, 4, *shape, generator=torch.Generator().manual_seed(3))
    for modules in (seeds, gates):
        expected = torch.stack([m(x[row]) for row, m in enumerate(modules)])
        torch.testing.assert_close(_stack(modules).call(x), expected, rtol=1e-5, atol=1e-5)


class _Unruled(nn.Module):
    """A layer no rule knows: the stacked call falls back to vmap."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.randn(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x * self.scale)


def test_modules_without_a_rule_fall_back_to_vmap_and_keep_gradients() -> None:
    modules = [_Unruled() for _ in range(E)]
    stacked = _stack(modules)
    stacked.tensors["scale"].requires_grad_(True)
    x = torch.randn(E, 2, 4)
    out = stacked.call(x)
    torch.testing.assert_close(out, torch.stack([m(x[row]) for row, m in enumerate(modules)]))
    out.sum().backward()
    for row, module in enumerate(modules):
        module(x[row]).sum().backward()
        torch.testing.assert_close(stacked.tensors["scale"].grad[row], module.scale.grad)
