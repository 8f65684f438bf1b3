"""MLPPolicyBundle specifics: no recurrent state, every time step scored independently.

Behaviour shared with the ``lstm`` bundle is in ``test_trainable_bundles.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from esper.tamiyo.contract import (
    ActionMasks,
    Observation,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_batch_masks,
    feature_size,
    op_conditioned_slot_mask,
)
from esper.tamiyo.policy.lstm import LSTMPolicyBundle
from esper.tamiyo.policy.mlp import MLPPolicyBundle

SLOTS = SlotConfig.for_count(2)


def _bundle() -> MLPPolicyBundle:
    torch.manual_seed(0)
    return MLPPolicyBundle(slot_config=SLOTS, hidden_size=16, lstm_hidden=16)


def _obs_and_masks(batch: int, steps: int) -> tuple[Observation, ActionMasks]:
    """``[B, T, ...]`` observations and raw masks (slot_by_op ``[B, T, O, S]`` folded into the batch later)."""
    states = {"r0c0": SlotState(SeedStage.HOLDING, 5), "r0c1": None}
    masks = compute_batch_masks([states] * batch * steps, slot_config=SLOTS, topology="mlp")
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(batch * steps, feature_size(2), generator=generator)
    indices = torch.tensor([[3, -1]] * batch * steps)
    return Observation(features, indices), masks


def test_is_not_recurrent() -> None:
    bundle = _bundle()
    assert not bundle.is_recurrent
    assert bundle.hidden_dim == 0
    assert bundle.initial_hidden(4) is None
    obs, masks = _obs_and_masks(3, 1)
    assert bundle.get_action(obs, masks).hidden is None


def test_passing_a_hidden_state_is_an_error() -> None:
    bundle = _bundle()
    obs, masks = _obs_and_masks(3, 1)
    with pytest.raises(ValueError, match="feed-forward"):
        bundle.get_action(obs, masks, (torch.zeros(1, 3, 16), torch.zeros(1, 3, 16)))


def test_each_time_step_is_scored_independently() -> None:
    bundle = _bundle()
    batch, steps = 3, 4
    flat_obs, flat_masks = _obs_and_masks(batch, steps)
    rollout = bundle.get_action(flat_obs, flat_masks, generator=torch.Generator().manual_seed(0))
    heads = dict(flat_masks.heads)
    heads["slot"] = op_conditioned_slot_mask(flat_masks.slot_by_op, rollout.actions["op"])
    update = bundle.evaluate_actions(
        Observation(flat_obs.features.view(batch, steps, -1), flat_obs.blueprint_indices.view(batch, steps, -1)),
        {h: a.view(batch, steps) for h, a in rollout.actions.items()},
        ActionMasks({h: m.view(batch, steps, -1) for h, m in heads.items()}),
    )
    assert update.hidden is None
    for head in bundle.action_space.head_names:
        assert torch.equal(update.log_probs[head].reshape(-1), rollout.log_probs[head]), head
    assert torch.equal(update.value.reshape(-1), rollout.value)


def test_shares_the_head_architecture_with_the_lstm_bundle() -> None:
    mlp = _bundle()
    lstm = LSTMPolicyBundle(slot_config=SLOTS, hidden_size=16, lstm_hidden=16)
    mlp_heads = {k: v.shape for k, v in mlp.state_dict().items() if k.startswith(("heads.", "encoder."))}
    lstm_heads = {k: v.shape for k, v in lstm.state_dict().items() if k.startswith(("heads.", "encoder."))}
    assert mlp_heads == lstm_heads


def test_policy_gradients_reach_the_trunk_and_q_loss_does_not(record_rollout: Callable[..., Any]) -> None:
    bundle = _bundle()
    recorded = record_rollout(bundle, [_obs_and_masks(2, 1)])
    args = (recorded.obs, recorded.actions, recorded.masks)
    update = bundle.evaluate_actions(*args)
    update.value.sum().backward()
    assert bundle.network.trunk[0].weight.grad.abs().sum() > 0
    bundle.network.zero_grad(set_to_none=True)
    update = bundle.evaluate_actions(*args)
    assert update.q_value is not None
    update.q_value.sum().backward()
    assert all((p.grad is not None) == n.startswith("heads.q.") for n, p in bundle.network.named_parameters())
