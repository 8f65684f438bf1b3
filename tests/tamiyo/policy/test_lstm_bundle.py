"""LSTMPolicyBundle specifics: recurrent state, sequence parity, gradient routing, presets.

Behaviour shared with the ``mlp`` bundle is in ``test_trainable_bundles.py``.
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
)
from esper.tamiyo.policy.lstm import LSTMPolicyBundle

#: The ``record_rollout`` fixture of tests/conftest.py.
RecordRollout = Callable[..., Any]

SLOTS = SlotConfig.for_count(3)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
STEP_STATES = [
    {"r0c0": None, "r0c1": None, "r0c2": None},
    {"r0c0": SlotState(SeedStage.TRAINING, 1), "r0c1": None, "r0c2": None},
    {"r0c0": SlotState(SeedStage.BLENDING, 4), "r0c1": None, "r0c2": SlotState(SeedStage.GERMINATED, 0)},
    {"r0c0": SlotState(SeedStage.HOLDING, 6), "r0c1": None, "r0c2": SlotState(SeedStage.TRAINING, 3)},
    {"r0c0": SlotState(SeedStage.FOSSILIZED, 7), "r0c1": SlotState(SeedStage.TRAINING, 5), "r0c2": None},
]


def _bundle() -> LSTMPolicyBundle:
    torch.manual_seed(0)
    return LSTMPolicyBundle(slot_config=SLOTS, hidden_size=16, lstm_hidden=16, probability_floor={"op": 0.15})


def _step(t: int, batch: int = 4) -> tuple[Observation, ActionMasks]:
    generator = torch.Generator().manual_seed(100 + t)
    masks = compute_batch_masks([STEP_STATES[t]] * batch, slot_config=SLOTS, topology="cnn")
    features = torch.randn(batch, feature_size(3), generator=generator)
    indices = torch.tensor([[-1 if s is None else 2 for s in STEP_STATES[t].values()]] * batch)
    return Observation(features, indices), masks


def _rollout(record: RecordRollout, bundle: LSTMPolicyBundle, steps: int, deterministic: bool = False) -> Any:
    """Step-by-step rollout from zero state: per-step results and the buffer view ``[B, T, ...]``."""
    return record(
        bundle,
        [_step(t) for t in range(steps)],
        hidden=bundle.initial_hidden(4),
        deterministic=deterministic,
        generator=torch.Generator().manual_seed(0),
    )


def test_recurrent_properties() -> None:
    bundle = _bundle()
    assert bundle.is_recurrent and bundle.hidden_dim == 16
    h, c = bundle.initial_hidden(5)
    assert h.shape == c.shape == (1, 5, 16)
    assert not h.is_inference() and not h.any() and not c.any()


@pytest.mark.parametrize("deterministic", [False, True])
def test_sequence_evaluation_matches_step_by_step_rollout(deterministic: bool, record_rollout: RecordRollout) -> None:
    """Whole-sequence update vs step-by-step rollout: equal up to GEMM rounding.

    Bit-identical only for same-shape calls (T=1, see test_trainable_bundles): BLAS may use
    other kernels for ``[B*T, K]`` than for ``[B, K]`` operands.
    """
    bundle = _bundle()
    results, obs_seq, actions, masks_seq = _rollout(record_rollout, bundle, steps=5, deterministic=deterministic)
    update = bundle.evaluate_actions(obs_seq, actions, masks_seq, hidden=None)
    for t, result in enumerate(results):
        for head in bundle.action_space.head_names:
            torch.testing.assert_close(update.log_probs[head][:, t], result.log_probs[head], **TOLERANCE)
        torch.testing.assert_close(update.value[:, t], result.value, **TOLERANCE)
    for a, b in zip(update.hidden, results[-1].hidden, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)


def test_evaluation_resumes_from_a_stored_hidden_state(record_rollout: RecordRollout) -> None:
    bundle = _bundle()
    results, obs_seq, actions, masks_seq = _rollout(record_rollout, bundle, steps=5)
    for t in range(5):
        single = bundle.evaluate_actions(
            Observation(obs_seq.features[:, t : t + 1], obs_seq.blueprint_indices[:, t : t + 1]),
            {h: a[:, t : t + 1] for h, a in actions.items()},
            ActionMasks({h: m[:, t : t + 1] for h, m in masks_seq.heads.items()}),
            hidden=None if t == 0 else results[t - 1].hidden,
        )
        # Same shapes as the rollout call, so exact.
        assert torch.equal(single.value[:, 0], results[t].value)
        assert all(torch.equal(single.log_probs[h][:, 0], results[t].log_probs[h]) for h in actions)
        assert all(torch.equal(a, b) for a, b in zip(single.hidden, results[t].hidden, strict=True))


def test_hidden_state_carries_history() -> None:
    bundle = _bundle()
    obs, masks = _step(2)
    other_history = bundle.get_action(Observation(-obs.features, obs.blueprint_indices), masks).hidden
    same_input_a = bundle.get_action(obs, masks, bundle.initial_hidden(4), deterministic=True)
    same_input_b = bundle.get_action(obs, masks, other_history, deterministic=True)
    assert not torch.equal(same_input_a.value, same_input_b.value)
    assert not torch.equal(bundle.get_value(obs, None), bundle.get_value(obs, other_history))


def test_policy_gradients_reach_the_lstm_and_q_loss_does_not(record_rollout: RecordRollout) -> None:
    bundle = _bundle()
    _, obs_seq, actions, masks_seq = _rollout(record_rollout, bundle, steps=3)
    update = bundle.evaluate_actions(obs_seq, actions, masks_seq)
    (sum(lp.sum() for lp in update.log_probs.values()) + update.value.sum()).backward()
    lstm_weights = bundle.network.lstm.layers[0].flat_weights
    assert lstm_weights.grad is not None and lstm_weights.grad.abs().sum() > 0

    bundle.network.zero_grad(set_to_none=True)
    update = bundle.evaluate_actions(obs_seq, actions, masks_seq)
    assert update.q_value is not None
    update.q_value.pow(2).mean().backward()
    for name, param in bundle.network.named_parameters():
        moved = param.grad is not None and bool(param.grad.abs().sum() > 0)
        assert moved == name.startswith("heads.q."), name


def test_wrong_hidden_shape_is_rejected() -> None:
    bundle = _bundle()
    obs, masks = _step(0)
    with pytest.raises(ValueError, match="hidden"):
        bundle.get_action(obs, masks, bundle.initial_hidden(3))


def test_preset_sizes_with_explicit_widths_taking_precedence() -> None:
    bundle = LSTMPolicyBundle(slot_config=SLOTS, preset="reference", lstm_hidden=8)
    assert (bundle.policy_config["hidden_size"], bundle.hidden_dim) == (512, 8)
    assert bundle.network.encoder.net[0].out_features == 512
