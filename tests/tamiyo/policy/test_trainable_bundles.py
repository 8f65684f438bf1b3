"""Behaviour shared by the trainable bundles (``lstm`` and ``mlp``, base ``policy/_trainable.py``).

Masks come from the contract's ``compute_batch_masks`` over varied slot states, and the update
leg is fed exactly what a rollout buffer would store: the actions taken and the ``slot_by_op``
row of the op taken.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
import torch
from esper_policy_example.gru import GRUPolicyBundle

from esper.tamiyo.contract import (
    ActionMasks,
    ActionSpace,
    AlphaMode,
    EmptyMaskError,
    Observation,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_batch_masks,
    feature_size,
    op_conditioned_slot_mask,
)
from esper.tamiyo.policy import (
    REFERENCE_PROBABILITY_FLOORS,
    ActionResult,
    PolicyBundle,
    TrainablePolicyBundle,
    create_policy,
)
from esper.tamiyo.policy.lstm import LSTMPolicyBundle
from esper.tamiyo.policy.mlp import MLPPolicyBundle

#: The ``record_rollout`` fixture of tests/conftest.py.
RecordRollout = Callable[..., Any]

BUNDLES = [LSTMPolicyBundle, MLPPolicyBundle]
STAGES = [SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING, SeedStage.FOSSILIZED]
Bundle = LSTMPolicyBundle | MLPPolicyBundle


def _bundle(cls: type[Bundle], num_slots: int = 3, **kwargs: object) -> Bundle:
    torch.manual_seed(0)
    return cls(slot_config=SlotConfig.for_count(num_slots), hidden_size=16, lstm_hidden=16, **kwargs)


def _batch(num_slots: int, batch: int, seed: int = 0) -> tuple[Observation, ActionMasks]:
    """Random observations and contract masks over varied slot states (empty, every stage, ages, alpha modes)."""
    rng = random.Random(seed)
    slots = SlotConfig.for_count(num_slots)
    states = [
        {
            slot_id: None
            if rng.random() < 0.3
            else SlotState(rng.choice(STAGES), age_epochs=rng.randint(0, 8), alpha_mode=rng.choice(list(AlphaMode)))
            for slot_id in slots.slot_ids
        }
        for _ in range(batch)
    ]
    masks = compute_batch_masks(
        states, slot_config=slots, topology="cnn", total_seeds=[rng.randint(0, 3) for _ in range(batch)], max_seeds=3
    )
    generator = torch.Generator().manual_seed(seed)
    indices = torch.tensor(
        [[-1 if state[s] is None else rng.randint(1, 7) for s in slots.slot_ids] for state in states]
    )
    return Observation(torch.randn(batch, feature_size(num_slots), generator=generator), indices), masks


@pytest.mark.parametrize("cls", BUNDLES)
def test_satisfies_the_protocol(cls: type[Bundle]) -> None:
    bundle = _bundle(cls)
    assert isinstance(bundle, PolicyBundle)
    assert bundle.device == torch.device("cpu") and bundle.dtype == torch.float32
    assert bundle.feature_dim == feature_size(3)
    assert bundle.action_space.size("slot") == 3
    assert sum(p.numel() for p in bundle.parameters()) > 0


@pytest.mark.parametrize("cls", BUNDLES)
@pytest.mark.parametrize("num_slots", [1, 2, 3, 5, 9])
@pytest.mark.parametrize("batch", [1, 6])
def test_get_action_and_evaluate_actions_shapes(
    cls: type[Bundle], num_slots: int, batch: int, record_rollout: RecordRollout
) -> None:
    bundle = _bundle(cls, num_slots)
    obs, masks = _batch(num_slots, batch)
    recorded = record_rollout(bundle, [(obs, masks), _batch(num_slots, batch, seed=1)])
    result = recorded.results[0]
    assert isinstance(result, ActionResult)
    for field in (result.actions, result.log_probs, result.entropies):
        assert list(field) == list(bundle.action_space.head_names)
        assert all(t.shape == (batch,) for t in field.values())
    assert all(t.dtype == torch.int64 for t in result.actions.values())
    assert result.value.shape == (batch,)
    assert bundle.get_value(obs, None).shape == (batch,)
    update = bundle.evaluate_actions(recorded.obs, recorded.actions, recorded.masks)
    for field in (update.log_probs, update.entropies):
        assert list(field) == list(bundle.action_space.head_names)
        assert all(t.shape == (batch, 2) and t.dtype == torch.float32 for t in field.values())
    assert update.value.shape == (batch, 2) and update.q_value is not None and update.q_value.shape == (batch, 2)


@pytest.mark.parametrize("cls", BUNDLES)
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("num_slots", [1, 3, 5])
def test_log_prob_and_value_parity_between_legs(
    cls: type[Bundle], deterministic: bool, num_slots: int, record_rollout: RecordRollout
) -> None:
    bundle = _bundle(cls, num_slots, probability_floor={"op": 0.15, "blueprint": 0.1, "slot": 0.05})
    recorded = record_rollout(
        bundle,
        [_batch(num_slots, 16, seed=num_slots)],
        deterministic=deterministic,
        generator=torch.Generator().manual_seed(3),
    )
    (rollout,) = recorded.results
    update = bundle.evaluate_actions(recorded.obs, recorded.actions, recorded.masks)
    for head in bundle.action_space.head_names:
        assert torch.equal(update.log_probs[head][:, 0], rollout.log_probs[head]), head
        assert torch.equal(update.entropies[head][:, 0], rollout.entropies[head]), head
    assert torch.equal(update.value[:, 0], rollout.value)
    assert update.q_value is not None and update.q_value.shape == (16, 1)


@pytest.mark.parametrize("cls", BUNDLES)
def test_irrelevant_heads_have_zero_log_prob_and_entropy(cls: type[Bundle]) -> None:
    bundle = _bundle(cls)
    obs, masks = _batch(3, 64, seed=5)
    result = bundle.get_action(obs, masks, generator=torch.Generator().manual_seed(0))
    relevant = bundle.action_space.relevance_masks(result.actions["op"])
    for head in bundle.action_space.head_names:
        irrelevant = ~relevant[head]
        assert torch.all(result.log_probs[head][irrelevant] == 0.0), head
        assert torch.all(result.entropies[head][irrelevant] == 0.0), head
    assert (~relevant["slot"]).any() and relevant["slot"].any()


@pytest.mark.parametrize("cls", BUNDLES)
def test_sampled_actions_are_always_valid(cls: type[Bundle]) -> None:
    bundle = _bundle(cls)
    obs, masks = _batch(3, 32, seed=9)
    repeat = 40
    obs = Observation(obs.features.repeat(repeat, 1), obs.blueprint_indices.repeat(repeat, 1))
    masks = ActionMasks({h: m.repeat(repeat, 1) for h, m in masks.heads.items()}, masks.slot_by_op.repeat(repeat, 1, 1))
    result = bundle.get_action(obs, masks, generator=torch.Generator().manual_seed(1))
    ops = result.actions["op"]
    assert masks.heads["op"].gather(1, ops[:, None]).all()
    slot_rows = op_conditioned_slot_mask(masks.slot_by_op, ops)
    assert slot_rows.gather(1, result.actions["slot"][:, None]).all()
    relevant = bundle.action_space.relevance_masks(ops)
    for head in ("blueprint", "style", "tempo", "alpha_target", "alpha_speed", "alpha_curve"):
        action = result.actions[head]
        assert masks.heads[head].gather(1, action[:, None]).all(), head
        # a head the op does not use holds its canonical placeholder
        canonical = bundle.action_space.canonical_action(head, masks.heads[head])
        assert torch.equal(action[~relevant[head]], canonical[~relevant[head]]), head
    for entropy in result.entropies.values():
        assert torch.all((entropy >= 0.0) & (entropy <= 1.0))


@pytest.mark.parametrize("cls", BUNDLES)
def test_generator_makes_sampling_reproducible(cls: type[Bundle]) -> None:
    bundle = _bundle(cls)
    obs, masks = _batch(3, 8)
    first = bundle.get_action(obs, masks, generator=torch.Generator().manual_seed(11))
    second = bundle.get_action(obs, masks, generator=torch.Generator().manual_seed(11))
    assert all(torch.equal(first.actions[h], second.actions[h]) for h in first.actions)


@pytest.mark.parametrize("cls", BUNDLES)
def test_probability_floor_is_applied_to_the_op(cls: type[Bundle]) -> None:
    bundle = _bundle(cls, probability_floor={"op": 0.2})
    obs, masks = _batch(3, 32, seed=2)
    result = bundle.get_action(obs, masks, generator=torch.Generator().manual_seed(0))
    num_valid = masks.heads["op"].sum(-1).float()
    floor = torch.minimum(torch.full_like(num_valid, 0.2), 0.99 / num_valid)
    assert torch.all(result.log_probs["op"].exp() >= floor - 1e-5)


@pytest.mark.parametrize("cls", BUNDLES)
def test_state_dict_round_trip_gives_identical_outputs(cls: type[Bundle]) -> None:
    source = _bundle(cls)
    torch.manual_seed(123)
    target = cls(slot_config=SlotConfig.for_count(3), feature_dim=source.feature_dim, **source.policy_config)
    target.load_state_dict(source.state_dict())
    obs, masks = _batch(3, 4)
    a = source.get_action(obs, masks, deterministic=True)
    b = target.get_action(obs, masks, deterministic=True)
    assert torch.equal(a.value, b.value)
    assert all(torch.equal(a.log_probs[h], b.log_probs[h]) for h in a.log_probs)


@pytest.mark.parametrize("cls", BUNDLES)
def test_load_rejects_another_architecture_clearly(cls: type[Bundle]) -> None:
    bundle = _bundle(cls)
    with pytest.raises(ValueError, match=r"num_slots=3.*shape mismatch.*heads\.policy\.slot"):
        bundle.load_state_dict(_bundle(cls, num_slots=5).state_dict())
    with pytest.raises(ValueError, match="shape mismatch"):
        bundle.load_state_dict(
            cls(slot_config=SlotConfig.for_count(3), feature_dim=40, hidden_size=16, lstm_hidden=16).state_dict()
        )
    with pytest.raises(ValueError, match="missing keys"):
        bundle.load_state_dict({k: v for k, v in bundle.state_dict().items() if "value" not in k})


@pytest.mark.parametrize("cls", BUNDLES)
def test_load_strips_the_compile_prefix(cls: type[Bundle]) -> None:
    bundle = _bundle(cls)
    prefixed = {f"_orig_mod.{k}": v + 1.0 if v.is_floating_point() else v for k, v in bundle.state_dict().items()}
    bundle.load_state_dict(prefixed)
    assert all(torch.equal(bundle.state_dict()[k.removeprefix("_orig_mod.")], v) for k, v in prefixed.items())


@pytest.mark.parametrize("cls", BUNDLES)
def test_policy_config_is_json_and_rebuilds_a_custom_action_space(cls: type[Bundle]) -> None:
    space = ActionSpace(
        head_names=("slot", "op"),
        head_sizes=(2, 3),
        op_head="op",
        relevance=((False, True), (True, True), (True, True)),
        placeholders=(0, 0),
        slot_head="slot",
    )
    slots = SlotConfig.for_count(2)
    bundle = cls(slot_config=slots, feature_dim=7, hidden_size=8, lstm_hidden=8, action_space=space)
    config = json.loads(json.dumps(bundle.policy_config))
    rebuilt = cls(slot_config=slots, feature_dim=7, **config)
    assert rebuilt.action_space == space
    rebuilt.load_state_dict(bundle.state_dict())
    with pytest.raises(ValueError, match=r"missing keys.*heads\.policy\.alpha_curve"):
        _bundle(cls, num_slots=2).load_state_dict(bundle.state_dict())


@pytest.mark.parametrize("cls", BUNDLES)
def test_the_slot_head_is_whichever_head_the_action_space_names(cls: type[Bundle]) -> None:
    """``slot_by_op`` conditions the space's ``slot_head``, whatever it is called."""
    space = ActionSpace(
        head_names=("target", "op"),
        head_sizes=(2, 3),
        op_head="op",
        relevance=((True, True), (True, True), (True, True)),
        placeholders=(0, 0),
        slot_head="target",
    )
    batch = 64
    torch.manual_seed(0)
    bundle = cls(slot_config=SlotConfig.for_count(2), feature_dim=7, hidden_size=8, lstm_hidden=8, action_space=space)
    heads = {"target": torch.ones(batch, 2, dtype=torch.bool), "op": torch.tensor([[False, True, True]] * batch)}
    slot_by_op = torch.tensor([[True, True], [True, False], [False, True]]).expand(batch, -1, -1)
    obs = Observation(torch.randn(batch, 7), torch.full((batch, 2), -1))
    result = bundle.get_action(obs, ActionMasks(heads, slot_by_op), generator=torch.Generator().manual_seed(0))
    assert set(result.actions["op"].tolist()) == {1, 2}
    assert torch.equal(result.actions["target"], result.actions["op"] - 1)  # op 1 -> target 0, op 2 -> target 1
    with pytest.raises(ValueError, match=r"slot head 'target' has 3 actions but the slot config has 2 slots"):
        cls(
            slot_config=SlotConfig.for_count(2),
            feature_dim=7,
            action_space={**json.loads(json.dumps(bundle.policy_config))["action_space"], "head_sizes": [3, 3]},
        )


@pytest.mark.parametrize("cls", BUNDLES)
def test_invalid_inputs_raise_clear_errors(cls: type[Bundle]) -> None:
    bundle = _bundle(cls)
    obs, masks = _batch(3, 2)
    with pytest.raises(ValueError, match="F=116"):
        bundle.get_action(Observation(obs.features[:, :-1], obs.blueprint_indices), masks)
    with pytest.raises(ValueError, match="slot_by_op"):
        bundle.get_action(obs, ActionMasks(masks.heads, None))
    empty = dict(masks.heads)
    empty["op"] = torch.zeros_like(empty["op"])
    with pytest.raises(EmptyMaskError, match="op"):
        bundle.get_action(obs, ActionMasks(empty, masks.slot_by_op))
    # a valid op whose slot_by_op row allows no slot would yield an invalid slot
    assert masks.heads["op"][0, 0]  # WAIT is always valid
    no_slot = masks.slot_by_op.clone()
    no_slot[0, 0] = False
    with pytest.raises(EmptyMaskError, match="slot_by_op"):
        bundle.get_action(obs, ActionMasks(masks.heads, no_slot))
    for bad in (13, -2):
        indices = obs.blueprint_indices.clone()
        indices[1, 0] = bad
        expected = rf"blueprint_indices must be -1 \(empty slot\) or in \[0, 13\), got \[{bad}\]"
        with pytest.raises(ValueError, match=expected):
            bundle.get_action(Observation(obs.features, indices), masks)
        with pytest.raises(ValueError, match="blueprint_indices"):
            bundle.get_value(Observation(obs.features, indices))
    with pytest.raises(ValueError, match="unknown head"):
        _bundle(cls, probability_floor={"nope": 0.1})
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        _bundle(cls, probability_floor={"op": 1.5})
    with pytest.raises(ValueError, match="unknown network preset"):
        _bundle(cls, preset="huge")


@pytest.mark.parametrize("cls", BUNDLES)
def test_compile_is_idempotent_and_pins_the_device(cls: type[Bundle]) -> None:
    bundle = _bundle(cls)
    with pytest.raises(ValueError, match="compile mode"):
        bundle.compile("fastest")
    assert bundle.compile("off") is bundle and not bundle.is_compiled
    keys = list(bundle.state_dict())
    assert bundle.to("cpu") is bundle
    assert bundle.compile("default") is bundle and bundle.is_compiled
    assert bundle.compile("max-autotune") is bundle
    assert list(bundle.state_dict()) == keys
    assert bundle.to("cpu") is bundle
    with pytest.raises(RuntimeError, match="compile after placement"):
        bundle.to("meta")


@pytest.mark.slow
@pytest.mark.parametrize("cls", BUNDLES)
def test_compiled_bundle_matches_eager(cls: type[Bundle], record_rollout: RecordRollout) -> None:
    eager = _bundle(cls, num_slots=2)
    compiled = _bundle(cls, num_slots=2).compile("default")
    obs, masks = _batch(2, 3)
    recorded = record_rollout(eager, [(obs, masks)], deterministic=True)
    (a,) = recorded.results
    b = compiled.get_action(obs, masks, deterministic=True)
    assert all(torch.equal(a.actions[h], b.actions[h]) for h in a.actions)
    torch.testing.assert_close(b.value, a.value)
    actions, stored = recorded.actions, recorded.masks
    ea = eager.evaluate_actions(recorded.obs, actions, stored)
    eb = compiled.evaluate_actions(recorded.obs, actions, stored)
    for head in actions:
        torch.testing.assert_close(eb.log_probs[head], ea.log_probs[head])
    sum(t.sum() for t in eb.log_probs.values()).backward()


def test_build_network_is_the_public_extension_point() -> None:
    class Bare(TrainablePolicyBundle):
        """Forgot to say which network to build."""

    with pytest.raises(NotImplementedError, match=r"^Bare must implement build_network\(action_space, feature_dim"):
        Bare(slot_config=SlotConfig())
    assert "build_network" in vars(LSTMPolicyBundle) and "build_network" in vars(MLPPolicyBundle)
    assert "build_network" in vars(GRUPolicyBundle)
    assert not any(hasattr(cls, "_build_network") for cls in (LSTMPolicyBundle, MLPPolicyBundle, GRUPolicyBundle))


@pytest.mark.parametrize(("name", "cls"), [("lstm", LSTMPolicyBundle), ("mlp", MLPPolicyBundle)])
def test_reference_probability_floors_are_an_ordinary_policy_option(name: str, cls: type[Bundle]) -> None:
    floors = REFERENCE_PROBABILITY_FLOORS
    bundle = create_policy(name, slot_config=SlotConfig(), hidden_size=8, lstm_hidden=8, probability_floor=floors)
    assert type(bundle) is cls and bundle.probability_floor == REFERENCE_PROBABILITY_FLOORS
    assert json.loads(json.dumps(bundle.policy_config))["probability_floor"] == dict(REFERENCE_PROBABILITY_FLOORS)
    assert set(REFERENCE_PROBABILITY_FLOORS) == set(bundle.action_space.head_names)
