"""The ``PolicyBundle`` protocol owns its signature: members derived from the class, ``generator=`` for all."""

from __future__ import annotations

import inspect
from typing import Protocol

import pytest
import torch

from esper.tamiyo.contract import SlotConfig, compute_batch_masks, feature_size
from esper.tamiyo.contract.observation import Observation
from esper.tamiyo.policy import PROTOCOL_MEMBERS, PolicyBundle, create_policy, validate_policy_class
from esper.tamiyo.policy.heuristic import HeuristicPolicyBundle
from esper.tamiyo.policy.protocol import protocol_members

SLOTS = SlotConfig.for_count(2)
SMALL = {"hidden_size": 8, "lstm_hidden": 8}


class _Base(Protocol):
    def act(self, x: int) -> int: ...


class _Toy(_Base, Protocol):
    limit: int

    def reset(self) -> None: ...

    @property
    def size(self) -> int: ...

    def _private_helper(self) -> None: ...


def test_members_are_read_from_the_protocol_class_itself() -> None:
    assert protocol_members(_Toy) == ("act", "limit", "reset", "size")
    public = {name for name in vars(PolicyBundle) if not name.startswith("_")}
    assert set(PROTOCOL_MEMBERS) == public and "get_action" in public and "policy_config" in public


def test_get_action_takes_a_keyword_only_generator() -> None:
    parameter = inspect.signature(PolicyBundle.get_action).parameters["generator"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


@pytest.mark.parametrize(
    ("policy_type", "kwargs"), [("lstm", SMALL), ("mlp", SMALL), ("heuristic", {}), ("example-gru", SMALL)]
)
def test_every_registered_bundle_accepts_a_generator(policy_type: str, kwargs: dict[str, int]) -> None:
    """The trainer always passes ``generator=``; two equal generators give equal samples."""
    torch.manual_seed(0)
    policy = create_policy(policy_type, slot_config=SLOTS, **kwargs)
    batch = 4
    masks = compute_batch_masks([dict.fromkeys(SLOTS.slot_ids)] * batch, slot_config=SLOTS, topology="cnn")
    obs = Observation(torch.zeros(batch, feature_size(SLOTS.num_slots)), torch.full((batch, 2), -1))
    first, second = (
        policy.get_action(obs, masks, policy.initial_hidden(batch), generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    )
    for head in policy.action_space.head_names:
        assert torch.equal(first.actions[head], second.actions[head]), head


class _NoGenerator(HeuristicPolicyBundle):
    """The signature before the protocol owned ``generator=``."""

    def get_action(self, obs, masks, hidden=None, deterministic=False):  # type: ignore[no-untyped-def, override]
        return super().get_action(obs, masks, hidden, deterministic)


class _RenamedOption(HeuristicPolicyBundle):
    """Required arguments may be renamed (they are passed by position); options may not."""

    def load_state_dict(self, weights, check=True):  # type: ignore[no-untyped-def, override]
        return None


class _TooFewArguments(HeuristicPolicyBundle):
    def initial_hidden(self):  # type: ignore[no-untyped-def, override]
        return None


class _Flexible(HeuristicPolicyBundle):
    def get_action(self, obs, masks, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        return super().get_action(obs, masks, *args, **kwargs)


def test_a_class_whose_methods_lack_protocol_parameters_is_refused_at_registration() -> None:
    expected = r"_NoGenerator does not satisfy PolicyBundle; get_action\(\) lacks: generator$"
    with pytest.raises(TypeError, match=expected):
        validate_policy_class(_NoGenerator)
    with pytest.raises(TypeError, match=r"; load_state_dict\(\) lacks: strict$"):
        validate_policy_class(_RenamedOption)
    with pytest.raises(TypeError, match=r"; initial_hidden\(\) lacks: batch_size$"):
        validate_policy_class(_TooFewArguments)
    validate_policy_class(_Flexible)  # **kwargs accepts every keyword
