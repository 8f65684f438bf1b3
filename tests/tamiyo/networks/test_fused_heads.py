"""ActorCriticHeads runs all policy MLPs as two fused ops over views of shared flat weights."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from esper.tamiyo.contract import SlotConfig, morphogenetic_action_space
from esper.tamiyo.networks import ActorCriticHeads

SPACE = morphogenetic_action_space(SlotConfig.for_count(3))


def _heads() -> ActorCriticHeads:
    torch.manual_seed(0)
    return ActorCriticHeads(SPACE, 16, 8)


def _per_head_logits(heads: ActorCriticHeads, trunk: torch.Tensor) -> dict[str, torch.Tensor]:
    """The unfused definition: each head's Linear → ReLU → Linear on its own."""
    out = {}
    for name in SPACE.head_names:
        first, _, last = heads.policy[name]
        out[name] = F.linear(torch.relu(F.linear(trunk, first.weight, first.bias)), last.weight, last.bias)
    return out


def _rollout(heads: ActorCriticHeads, trunk: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return {name: values.clone() for name, values in heads(trunk)[0].items()}


def test_state_dict_keys_and_shapes_are_those_of_per_head_layers() -> None:
    """Checkpoints written before the fusion load unchanged: the parameter layout is the per-head one."""
    state = _heads().state_dict()
    for name, size in SPACE.sizes().items():
        assert state[f"policy.{name}.0.weight"].shape == (8, 16)
        assert state[f"policy.{name}.2.weight"].shape == (size, 8)
        assert state[f"policy.{name}.2.bias"].shape == (size,)
    assert not any("flat" in key or "rows" in key for key in state)


def test_fused_logits_equal_the_per_head_definition() -> None:
    heads = _heads()
    trunk = torch.randn(64, 3, 16)
    with torch.no_grad():
        fused, _ = heads(trunk)
        expected = _per_head_logits(heads, trunk)
    for name in SPACE.head_names:
        torch.testing.assert_close(fused[name], expected[name], rtol=1e-6, atol=1e-7)


def test_rollout_fast_path_and_autograd_path_agree_bit_for_bit() -> None:
    """Inference mode reads the flat tensors, autograd concatenates the parameters: same ops, same numbers."""
    heads = _heads()
    for batch in (1, 4, 16):
        trunk = torch.randn(batch, 1, 16)
        tracked = heads(trunk)[0]
        rollout = _rollout(heads, trunk)
        assert all(torch.equal(rollout[h], tracked[h].detach()) for h in SPACE.head_names)


def test_parameters_alias_the_flat_tensors_and_optimiser_steps_reach_the_rollout() -> None:
    heads = _heads()
    trunk = torch.randn(4, 1, 16)
    before = _rollout(heads, trunk)
    optimiser = torch.optim.Adam(heads.parameters(), lr=0.1)
    loss = sum(values.sum() for values in heads(trunk)[0].values())
    loss.backward()
    assert heads.policy["op"][0].weight.grad is not None
    optimiser.step()
    after = _rollout(heads, trunk)
    assert not torch.equal(before["op"], after["op"])
    with torch.no_grad():
        expected = heads(trunk)[0]
    assert all(torch.equal(after[h], expected[h]) for h in SPACE.head_names)


def test_a_broken_alias_falls_back_to_concatenating() -> None:
    heads = _heads()
    trunk = torch.randn(4, 1, 16)
    weight = heads.policy["blueprint"][2].weight
    weight.data = weight.data.clone() + 1.0  # no longer a view of the flat tensor
    with torch.no_grad():
        expected = heads(trunk)[0]
    assert all(torch.equal(_rollout(heads, trunk)[h], expected[h]) for h in SPACE.head_names)


def test_conversion_re_flattens() -> None:
    heads = _heads()
    trunk = torch.randn(4, 1, 16, dtype=torch.float64)
    heads.to(torch.float64)
    flat = heads._flat
    assert flat is not None and flat.hidden_weight.dtype == torch.float64
    assert all(param.data_ptr() == address for param, address in flat.views)
    with torch.no_grad():
        expected = heads(trunk)[0]
    assert all(torch.equal(_rollout(heads, trunk)[h], expected[h]) for h in SPACE.head_names)
