"""The example plugin's GRU bundle: a PolicyBundle whose rollout and update legs agree to float rounding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from esper_policy_example.gru import GRUPolicyBundle

from esper.tamiyo.contract import (
    ActionMasks,
    AlphaMode,
    Observation,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_batch_masks,
    feature_size,
)
from esper.tamiyo.policy import PolicyBundle, create_policy

#: The ``record_rollout`` fixture of tests/conftest.py.
RecordRollout = Callable[..., Any]

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


def _rollout(record: RecordRollout, policy: GRUPolicyBundle, deterministic: bool) -> Any:
    """``STEPS`` steps of ``BATCH`` envs from zero state; one generator draws the inputs, then samples."""
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(BATCH, STEPS, feature_size(SLOTS.num_slots), generator=generator)
    blueprints = torch.randint(-1, 13, (BATCH, STEPS, SLOTS.num_slots), generator=generator)
    steps = [(Observation(features[:, t], blueprints[:, t]), _masks(t)) for t in range(STEPS)]
    return record(policy, steps, hidden=policy.initial_hidden(BATCH), deterministic=deterministic, generator=generator)


def test_is_a_recurrent_policy_bundle_built_through_the_registry() -> None:
    policy = create_policy("example-gru", slot_config=SLOTS, **SMALL)
    assert isinstance(policy, GRUPolicyBundle) and isinstance(policy, PolicyBundle)
    assert policy.is_recurrent and policy.hidden_dim == 16
    hidden = policy.initial_hidden(BATCH)
    assert hidden is not None and len(hidden) == 1 and hidden[0].shape == (1, BATCH, 16)
    assert policy.policy_config == {"hidden_size": 16, "lstm_hidden": 16, "probability_floor": None}


@pytest.mark.parametrize("deterministic", [False, True])
def test_get_action_and_evaluate_actions_agree_to_float_rounding(
    deterministic: bool, record_rollout: RecordRollout
) -> None:
    """Same actions, log-probs, entropies and values on both legs, to float32 rounding.

    Not bit for bit: ``nn.GRU`` projects the inputs of a whole sequence in one matrix multiply on
    the update leg and one step at a time on the rollout leg, and on some CPUs (AVX-512, and
    ``ATEN_CPU_CAPABILITY=default``) the two shapes get kernels that sum in another order.
    """
    torch.manual_seed(0)
    policy = GRUPolicyBundle(slot_config=SLOTS, probability_floor={"op": 0.1}, **SMALL)
    results, obs, actions, masks = _rollout(record_rollout, policy, deterministic)
    evaluated = policy.evaluate_actions(obs, actions, masks, policy.initial_hidden(BATCH))
    close = {"rtol": 1e-5, "atol": 1e-6}
    for t, result in enumerate(results):
        for head in policy.action_space.head_names:
            torch.testing.assert_close(evaluated.log_probs[head][:, t], result.log_probs[head], **close)
            torch.testing.assert_close(evaluated.entropies[head][:, t], result.entropies[head], **close)
        torch.testing.assert_close(evaluated.value[:, t], result.value, **close)
    torch.testing.assert_close(evaluated.hidden[0], results[-1].hidden[0], **close)  # type: ignore[index]


def test_evaluate_actions_gradients_reach_the_gru(record_rollout: RecordRollout) -> None:
    torch.manual_seed(0)
    policy = GRUPolicyBundle(slot_config=SLOTS, **SMALL)
    _, obs, actions, masks = _rollout(record_rollout, policy, deterministic=False)
    evaluated = policy.evaluate_actions(obs, actions, masks)
    loss = -sum(lp.sum() for lp in evaluated.log_probs.values()) + evaluated.value.square().mean()
    loss.backward()
    gru = policy.network.gru  # type: ignore[union-attr]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gru.parameters())


def test_state_dict_round_trip_gives_identical_outputs(record_rollout: RecordRollout) -> None:
    torch.manual_seed(0)
    source = GRUPolicyBundle(slot_config=SLOTS, **SMALL)
    target = GRUPolicyBundle(slot_config=SLOTS, **SMALL)
    target.load_state_dict(source.state_dict())
    _, obs, actions, masks = _rollout(record_rollout, source, deterministic=True)
    a = source.evaluate_actions(obs, actions, masks)
    b = target.evaluate_actions(obs, actions, masks)
    assert all(torch.equal(a.log_probs[h], b.log_probs[h]) for h in a.log_probs)
    with pytest.raises(ValueError, match="does not fit"):
        GRUPolicyBundle(slot_config=SlotConfig.for_count(2), **SMALL).load_state_dict(source.state_dict())
