"""The rollout leg's value checks: empty mask rows and non-finite logits fail loudly, naming the culprit."""

from __future__ import annotations

import pytest
import torch

from esper.tamiyo.contract import (
    ActionMasks,
    EmptyMaskError,
    Observation,
    SlotConfig,
    compute_batch_masks,
    feature_size,
)
from esper.tamiyo.policy.lstm import LSTMPolicyBundle

SLOTS = SlotConfig.for_count(3)


def _step(batch: int = 4) -> tuple[LSTMPolicyBundle, Observation, ActionMasks]:
    torch.manual_seed(0)
    bundle = LSTMPolicyBundle(slot_config=SLOTS, hidden_size=16, lstm_hidden=16)
    masks = compute_batch_masks([dict.fromkeys(SLOTS.slot_ids)] * batch, slot_config=SLOTS, topology="cnn")
    obs = Observation(torch.randn(batch, feature_size(3)), torch.full((batch, 3), -1))
    return bundle, obs, masks


def test_a_nan_observation_is_rejected_not_sampled() -> None:
    """The exponential race would pick some action from NaN probabilities; get_action raises instead."""
    bundle, obs, masks = _step()
    obs.features[2, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite logits"):
        bundle.get_action(obs, masks)


@pytest.mark.parametrize("head", ["blueprint", "op"])
def test_an_empty_mask_row_names_its_head(head: str) -> None:
    bundle, obs, masks = _step()
    heads = dict(masks.heads)
    heads[head] = heads[head].clone()
    heads[head][1] = False
    with pytest.raises(EmptyMaskError, match=head):
        bundle.get_action(obs, ActionMasks(heads, masks.slot_by_op))
