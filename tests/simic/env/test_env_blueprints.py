"""Blueprint registry, shapes, parameter counts, seeded initialisation, and hosts."""

from __future__ import annotations

import pytest
import torch

from esper.simic.env.blueprints import BLUEPRINT_BUILDERS, build_blueprint, build_gate, group_count
from esper.simic.env.hosts import HOST_PRESETS, build_host
from esper.tamiyo.contract import TOPOLOGY_BLUEPRINTS, BlueprintAction, topology_blueprints

SHAPES = {"mlp": (16,), "cnn": (8, 4, 4)}


def test_registry_matches_the_contract() -> None:
    for topology, builders in BLUEPRINT_BUILDERS.items():
        assert set(builders) == set(TOPOLOGY_BLUEPRINTS[topology])
    assert set(BLUEPRINT_BUILDERS) == {"mlp", "cnn", "transformer"}


@pytest.mark.parametrize("topology,blueprint", [(t, b) for t in SHAPES for b in topology_blueprints(t)], ids=str)
def test_shape_preserving_identity_at_birth_and_seeded(topology: str, blueprint: BlueprintAction) -> None:
    shape = SHAPES[topology]
    seed = build_blueprint(topology, blueprint, shape, torch.Generator().manual_seed(0))
    x = torch.randn(5, *shape)
    assert torch.equal(seed(x), x)
    again = build_blueprint(topology, blueprint, shape, torch.Generator().manual_seed(0))
    params = [p for p in seed.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(params, again.parameters(), strict=True))


def test_different_generators_give_different_seeds() -> None:
    a = build_blueprint("cnn", BlueprintAction.CONV_HEAVY, (8, 4, 4), torch.Generator().manual_seed(0))
    b = build_blueprint("cnn", BlueprintAction.CONV_HEAVY, (8, 4, 4), torch.Generator().manual_seed(1))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize(
    "topology,blueprint,shape,count",
    [
        ("cnn", BlueprintAction.NORM, (8, 4, 4), 2 * 8 + 1),
        ("cnn", BlueprintAction.CONV_SMALL, (8, 4, 4), 8 * 8 + 2 * 8),
        ("cnn", BlueprintAction.CONV_LIGHT, (8, 4, 4), 9 * 64 + 2 * 8),
        ("cnn", BlueprintAction.CONV_HEAVY, (8, 4, 4), 18 * 64 + 4 * 8),
        ("mlp", BlueprintAction.LORA, (16,), 2 * 16 * 4),
        ("mlp", BlueprintAction.LORA_LARGE, (16,), 2 * 16 * 16),
        ("mlp", BlueprintAction.MLP, (16,), 16 * 64 + 64 + 64 * 16 + 16),
        ("mlp", BlueprintAction.NORM, (16,), 2 * 16 + 1),
    ],
)
def test_parameter_counts(topology: str, blueprint: BlueprintAction, shape: tuple[int, ...], count: int) -> None:
    seed = build_blueprint(topology, blueprint, shape, torch.Generator())
    assert sum(p.numel() for p in seed.parameters()) == count


def test_unknown_blueprint_for_topology() -> None:
    with pytest.raises(ValueError, match="not available for a 'mlp' host"):
        build_blueprint("mlp", BlueprintAction.DEPTHWISE, (8,), torch.Generator())
    with pytest.raises(ValueError, match="not available"):
        build_blueprint("cnn", BlueprintAction.NOOP, (8, 4, 4), torch.Generator())


def test_gate_starts_at_one_half() -> None:
    for shape in ((6,), (4, 3, 3)):
        gate = build_gate(shape, torch.Generator().manual_seed(0))
        out = gate(torch.randn(7, *shape))
        assert out.shape == (7,) + (1,) * len(shape) and torch.all(out == 0.5)


def test_group_count() -> None:
    assert [group_count(c) for c in (1, 2, 4, 8, 16, 32, 64, 128)] == [1, 1, 1, 2, 4, 8, 16, 32]


@pytest.mark.parametrize("topology,impaired", [key for key in HOST_PRESETS if key[0] != "transformer"])
@pytest.mark.parametrize("input_shape", [(1, 8, 8), (3, 32, 32)])
def test_hosts_expose_slot_shapes(topology: str, impaired: bool, input_shape: tuple[int, int, int]) -> None:
    host = build_host(
        topology, impaired=impaired, input_shape=input_shape, num_classes=10, generator=torch.Generator().manual_seed(0)
    )
    h = torch.randn(4, *input_shape)
    for block, shape in zip(host.blocks, host.slot_shapes, strict=True):
        h = block(h)
        assert tuple(h.shape[1:]) == shape
    assert host.head(h).shape == (4, 10) and host(torch.randn(4, *input_shape)).shape == (4, 10)
    if topology == "cnn":
        spatial = [s[1] for s in host.slot_shapes]
        assert spatial == ([8, 4, 2] if input_shape[1] == 8 else [32, 16, 8])
    same = build_host(
        topology, impaired=impaired, input_shape=input_shape, num_classes=10, generator=torch.Generator().manual_seed(0)
    )
    assert all(torch.equal(a, b) for a, b in zip(host.parameters(), same.parameters(), strict=True))
