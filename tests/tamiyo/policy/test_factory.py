"""create_policy: every registered bundle builds through one call, compile modes, placement."""

from __future__ import annotations

import pytest
import torch

from esper.tamiyo.contract import SlotConfig, feature_size
from esper.tamiyo.policy import (
    COMPILE_MODES,
    PolicyBundle,
    PolicyRegistry,
    UnknownPolicyError,
    create_policy,
)
from esper.tamiyo.policy.heuristic import HeuristicPolicyBundle

SMALL = {"hidden_size": 8, "lstm_hidden": 8}


@pytest.mark.parametrize(
    ("policy_type", "kwargs"), [("lstm", SMALL), ("mlp", SMALL), ("heuristic", {}), ("example-gru", SMALL)]
)
def test_every_registered_bundle_is_a_policy_bundle(policy_type: str, kwargs: dict[str, int]) -> None:
    slots = SlotConfig.for_count(2)
    policy = create_policy(policy_type, slot_config=slots, **kwargs)
    assert isinstance(policy, PolicyBundle)
    assert policy.slot_config == slots
    assert policy.feature_dim == feature_size(2)
    assert policy.device == torch.device("cpu")
    # the policy_config rebuilds the same kind of bundle through the registry
    rebuilt = create_policy(policy_type, slot_config=slots, **policy.policy_config)
    assert type(rebuilt) is type(policy) and dict(rebuilt.policy_config) == dict(policy.policy_config)


def test_defaults_to_three_slots_and_passes_kwargs() -> None:
    policy = create_policy("heuristic", topology="cnn", embargo_epochs_after_prune=5)
    assert isinstance(policy, HeuristicPolicyBundle)
    assert policy.slot_config == SlotConfig() and policy.topology == "cnn"
    assert policy.config.embargo_epochs_after_prune == 5


def test_rejects_an_unknown_compile_mode_before_building() -> None:
    with pytest.raises(ValueError, match=r"unknown compile_mode 'fast'; expected one of \['off', 'default'"):
        create_policy("heuristic", compile_mode="fast")
    assert COMPILE_MODES[0] == "off"


def test_unknown_policy_type_names_the_alternatives() -> None:
    registry = PolicyRegistry(group=None)
    registry.register("heuristic", HeuristicPolicyBundle)
    with pytest.raises(UnknownPolicyError, match="did you mean 'heuristic'"):
        create_policy("heuristics", registry=registry)


def test_uses_the_given_registry() -> None:
    registry = PolicyRegistry(group=None)

    @registry.register_policy("mine")
    class Mine(HeuristicPolicyBundle):
        pass

    assert type(create_policy("mine", registry=registry)) is Mine
    with pytest.raises(UnknownPolicyError):
        create_policy("lstm", registry=registry)


def test_places_before_compiling() -> None:
    calls: list[tuple[str, str]] = []
    registry = PolicyRegistry(group=None)

    @registry.register_policy("spy")
    class Spy(HeuristicPolicyBundle):
        def to(self, device: torch.device | str) -> Spy:
            calls.append(("to", str(device)))
            return super().to(device)

        def compile(self, mode: str = "default") -> Spy:
            calls.append(("compile", mode))
            return super().compile(mode)

    create_policy("spy", registry=registry, compile_mode="max-autotune")
    assert calls == [("to", "cpu"), ("compile", "max-autotune")]
    calls.clear()
    create_policy("spy", registry=registry)  # "off": never compiled
    assert calls == [("to", "cpu")]


@pytest.mark.parametrize("policy_type", ["lstm", "mlp", "example-gru"])
def test_compile_is_in_place_and_idempotent(policy_type: str) -> None:
    policy = create_policy(policy_type, compile_mode="default", **SMALL)
    network = policy.network
    keys = sorted(policy.state_dict())
    assert policy.compile("default") is policy and policy.compile("max-autotune") is policy
    assert policy.network is network  # the inner module is compiled in place, the wrapper never
    assert sorted(policy.state_dict()) == keys and not any(k.startswith("_orig_mod.") for k in keys)
    assert type(policy).__module__.startswith(("esper.", "esper_policy_example."))


@pytest.mark.parametrize("policy_type", ["lstm", "mlp", "example-gru"])
def test_a_compiled_policy_stays_where_it_was_compiled(policy_type: str) -> None:
    """Decided behaviour: compile after placement. Moving a compiled trainable bundle to another
    device raises (its graphs are specialised to the device); ``.to`` its own device is a no-op."""
    policy = create_policy(policy_type, compile_mode="default", **SMALL)
    assert policy.to("cpu") is policy and policy.device == torch.device("cpu")
    with pytest.raises(RuntimeError, match="compile after placement"):
        policy.to("meta")
    assert policy.device == torch.device("cpu")
    uncompiled = create_policy(policy_type, **SMALL)
    assert uncompiled.to("meta").device == torch.device("meta")


def test_heuristic_compile_is_a_validated_no_op() -> None:
    policy = create_policy("heuristic", compile_mode="reduce-overhead")
    assert policy.network is None and policy.to("meta").device == torch.device("meta")
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        policy.compile("fast")
