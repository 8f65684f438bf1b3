"""The example plugin's GRU bundle: a PolicyBundle whose rollout and update legs agree exactly."""

from __future__ import annotations

import pytest
import torch

from esper.tamiyo.contract import (
    ActionMasks,
    AlphaMode,
    Observation,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_batch_masks,
    feature_size,
    op_conditioned_slot_mask,
)
from esper.tamiyo.policy import PolicyBundle, create_policy
from esper_policy_example.gru import GRUPolicyBundle

SLOTS = SlotConfig.for_count(3)
BATCH, STEPS = 4, 5
SMALL = {"hidden_size": 16, "lstm_hidden": 16}


def _masks(step: int) -> ActionMasks:
    """Different slot states per env and step, so ops, slots and canonical heads vary."""
    cycle = [None, SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING, SeedStage.FOSSILIZED]
    batch = []
    for env in range(BATCH):
        states = {}
        for k, slot_id in enumerate(SLOTS.slot_ids):
            stage = cycle[(env + k + step) % len(cycle)]
            seed = None if stage is None else SlotState(int(stage), age_epochs=env + step, alpha_mode=AlphaMode.HOLD)
            states[slot_id] = seed
        batch.append(states)
    return compute_batch_masks(batch, slot_config=SLOTS, topology="mlp", auto_advance=False)


def _rollout(policy: GRUPolicyBundle, deterministic: bool) -> tuple[Observation, dict, ActionMasks, list]:
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(BATCH, STEPS, feature_size(SLOTS.num_slots), generator=generator)
    blueprints = torch.randint(-1, 13, (BATCH, STEPS, SLOTS.num_slots), generator=generator)
    hidden = policy.initial_hidden(BATCH)
    actions, masks, results = [], [], []
    for t in range(STEPS):
        step_masks = _masks(t)
        result = policy.get_action(
            Observation(features[:, t], blueprints[:, t]), step_masks, hidden, deterministic, generator=generator
        )
        stored = dict(step_masks.heads)
        stored["slot"] = op_conditioned_slot_mask(step_masks.slot_by_op, result.actions["op"])  # type: ignore[arg-type]
        actions.append(result.actions)
        masks.append(stored)
        results.append(result)
        hidden = result.hidden
    heads = policy.action_space.head_names
    seq_actions = {h: torch.stack([a[h] for a in actions], dim=1) for h in heads}
    seq_masks = ActionMasks({h: torch.stack([m[h] for m in masks], dim=1) for h in heads})
    return Observation(features, blueprints), seq_actions, seq_masks, results


def test_is_a_recurrent_policy_bundle_built_through_the_registry() -> None:
    policy = create_policy("example-gru", slot_config=SLOTS, **SMALL)
    assert isinstance(policy, GRUPolicyBundle) and isinstance(policy, PolicyBundle)
    assert policy.is_recurrent and policy.hidden_dim == 16
    hidden = policy.initial_hidden(BATCH)
    assert hidden is not None and len(hidden) == 1 and hidden[0].shape == (1, BATCH, 16)
    assert policy.policy_config == {"hidden_size": 16, "lstm_hidden": 16, "probability_floor": None}


@pytest.mark.parametrize("deterministic", [False, True])
def test_get_action_and_evaluate_actions_log_probs_agree_exactly(deterministic: bool) -> None:
    torch.manual_seed(0)
    policy = GRUPolicyBundle(slot_config=SLOTS, probability_floor={"op": 0.1}, **SMALL)
    obs, actions, masks, results = _rollout(policy, deterministic)
    evaluated = policy.evaluate_actions(obs, actions, masks, policy.initial_hidden(BATCH))
    for t, result in enumerate(results):
        for head in policy.action_space.head_names:
            assert torch.equal(evaluated.log_probs[head][:, t], result.log_probs[head]), (t, head)
            assert torch.equal(evaluated.entropies[head][:, t], result.entropies[head]), (t, head)
        assert torch.equal(evaluated.value[:, t], result.value), t
    assert torch.equal(evaluated.hidden[0], results[-1].hidden[0])  # type: ignore[index]


def test_evaluate_actions_gradients_reach_the_gru() -> None:
    torch.manual_seed(0)
    policy = GRUPolicyBundle(slot_config=SLOTS, **SMALL)
    obs, actions, masks, _ = _rollout(policy, deterministic=False)
    evaluated = policy.evaluate_actions(obs, actions, masks)
    loss = -sum(lp.sum() for lp in evaluated.log_probs.values()) + evaluated.value.square().mean()
    loss.backward()
    gru = policy.network.gru  # type: ignore[union-attr]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gru.parameters())


def test_state_dict_round_trip_gives_identical_outputs() -> None:
    torch.manual_seed(0)
    source = GRUPolicyBundle(slot_config=SLOTS, **SMALL)
    target = GRUPolicyBundle(slot_config=SLOTS, **SMALL)
    target.load_state_dict(source.state_dict())
    obs, actions, masks, _ = _rollout(source, deterministic=True)
    a = source.evaluate_actions(obs, actions, masks)
    b = target.evaluate_actions(obs, actions, masks)
    assert all(torch.equal(a.log_probs[h], b.log_probs[h]) for h in a.log_probs)
    with pytest.raises(ValueError, match="does not fit"):
        GRUPolicyBundle(slot_config=SlotConfig.for_count(2), **SMALL).load_state_dict(source.state_dict())
