"""HeuristicPolicyBundle on crafted observations built through the named ObservationLayout."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from esper.tamiyo.contract import (
    STAGE_ORDER,
    UNKNOWN,
    ActionMasks,
    ActionSpace,
    AlphaMode,
    BlueprintAction,
    EmptyMaskError,
    GerminationStyle,
    LifecycleOp,
    Observation,
    ObservationLayout,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_action_masks,
    compute_batch_masks,
    stack_masks,
    symlog,
)
from esper.tamiyo.policy import PolicyBundle
from esper.tamiyo.policy.heuristic import HeuristicMemory, HeuristicPolicyBundle

L = 40  # episode length the default config assumes
SLOTS = SlotConfig()
LAYOUT = ObservationLayout(SLOTS)
STABLE_LOSSES = (0.50, 0.50, 0.50, 0.50, 0.50)
PLATEAU_ACC = (80.0, 80.1, 80.2, 80.2, 80.3)


@dataclass(frozen=True)
class Seed:
    stage: SeedStage
    blueprint: BlueprintAction = BlueprintAction.NORM
    alpha: float = 0.0
    alpha_target: float = 1.0
    alpha_mode: AlphaMode = AlphaMode.HOLD
    contribution: float | None = None  # accuracy points; None = never measured
    epochs_in_stage: int = 0
    age: int = 5


def _write(
    layout: ObservationLayout,
    features: torch.Tensor,
    name: str,
    values: Sequence[float] | float,
    slot: int | None = None,
) -> None:
    rng = layout.base(name) if slot is None else layout.slot(slot, name)
    features[rng] = torch.as_tensor(values, dtype=torch.float32)


def make_features(
    epoch: int,
    accuracies: Sequence[float] = PLATEAU_ACC,
    losses: Sequence[float] = STABLE_LOSSES,
    seeds: Mapping[int, Seed] | None = None,
    layout: ObservationLayout = LAYOUT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One env's ``features [F]`` and ``blueprint_indices [S]``; histories oldest first, current last."""
    features = torch.zeros(layout.size)
    blueprints = torch.full((layout.num_slots,), -1, dtype=torch.long)

    def write(name: str, values: Sequence[float] | float, slot: int | None = None) -> None:
        _write(layout, features, name, values, slot)

    pad = [UNKNOWN] * (5 - len(accuracies))
    write("epoch_progress", epoch / L)
    write("val_accuracy", accuracies[-1] / 100)
    write("val_loss", symlog(losses[-1]) / 7)
    write("accuracy_history", pad + [a / 100 for a in accuracies])
    write("loss_history", [UNKNOWN] * (5 - len(losses)) + [symlog(x) / 7 for x in losses])
    for k, seed in (seeds or {}).items():
        onehot = [0.0] * len(STAGE_ORDER)
        onehot[STAGE_ORDER.index(seed.stage)] = 1.0
        write("is_active", 1.0, k)
        write("stage", onehot, k)
        write("alpha", seed.alpha, k)
        write("alpha_target", seed.alpha_target, k)
        write("alpha_mode", int(seed.alpha_mode) / 2, k)
        write("contribution", 0.0 if seed.contribution is None else seed.contribution / 10, k)
        write("contribution_freshness", UNKNOWN if seed.contribution is None else 1.0, k)
        write("epochs_in_stage", seed.epochs_in_stage / L, k)
        write("seed_age", seed.age / L, k)
        blueprints[k] = int(seed.blueprint)
    return features, blueprints


def make_masks(seeds: Mapping[int, Seed] | None = None, **kwargs: object):
    states = {sid: None for sid in SLOTS.slot_ids}
    for k, seed in (seeds or {}).items():
        states[SLOTS.slot_ids[k]] = SlotState(int(seed.stage), seed.age, int(seed.alpha_mode))
    return compute_batch_masks([states], topology="mlp", **kwargs)


class Runner:
    """Drives one environment through a bundle, threading the hidden memory like a trainer."""

    def __init__(self, **config: object) -> None:
        self.policy = HeuristicPolicyBundle(slot_config=SLOTS, topology="mlp", **config)
        self.hidden = self.policy.initial_hidden(1)

    def step(
        self,
        epoch: int,
        seeds: Mapping[int, Seed] | None = None,
        mask_kwargs: Mapping[str, object] | None = None,
        **obs: object,
    ) -> dict[str, int]:
        features, blueprints = make_features(epoch, seeds=seeds, **obs)  # type: ignore[arg-type]
        result = self.policy.get_action(
            Observation(features[None], blueprints[None]), make_masks(seeds, **(mask_kwargs or {})), self.hidden
        )
        self.hidden = result.hidden
        return {h: int(v[0]) for h, v in result.actions.items()}

    @property
    def memory(self) -> HeuristicMemory:
        assert self.hidden is not None
        return HeuristicMemory.unpack(self.hidden[0], SLOTS.num_slots)


def test_is_a_policy_bundle_without_parameters() -> None:
    policy = HeuristicPolicyBundle(slot_config=SLOTS)
    assert isinstance(policy, PolicyBundle)
    assert list(policy.parameters()) == [] and policy.network is None and policy.state_dict() == {}
    assert policy.is_recurrent and policy.hidden_dim == 4 + 13 + 3 * 3 and policy.feature_dim == LAYOUT.size
    assert policy.compile("default") is policy and policy.to("cpu") is policy
    with pytest.raises(NotImplementedError, match="not trainable"):
        policy.evaluate_actions(Observation(torch.zeros(1, 1, LAYOUT.size), torch.zeros(1, 1, 3)), {}, make_masks())
    assert torch.equal(policy.get_value(Observation(torch.zeros(2, LAYOUT.size), torch.zeros(2, 3))), torch.zeros(2))
    policy.load_state_dict({})
    with pytest.raises(ValueError, match=r"has no weights, got a state dict with keys \['w'\]"):
        policy.load_state_dict({"w": torch.zeros(1)})


def test_an_episode_block_is_carried_along_unread() -> None:
    """A varied benchmark appends the episode block; the rules read named fields, so they act the same."""
    varied = ObservationLayout(SLOTS, episode_block=True)
    policy = HeuristicPolicyBundle(slot_config=SLOTS, feature_dim=varied.size)
    assert policy.feature_dim == varied.size == LAYOUT.size + 4
    plain = torch.zeros(1, LAYOUT.size)
    _write(LAYOUT, plain, "val_loss", 0.3)
    with_block = torch.cat([plain, torch.tensor([[0.875, 0.125, 0.5, 1.0]])], dim=1)
    blueprints = torch.full((1, 3), -1)
    chosen = []
    for features, bundle in ((plain, HeuristicPolicyBundle(slot_config=SLOTS)), (with_block, policy)):
        result = bundle.get_action(Observation(features, blueprints), make_masks(), bundle.initial_hidden(1))
        chosen.append({h: int(v) for h, v in result.actions.items()})
    assert chosen[0] == chosen[1] and chosen[0]["op"] == LifecycleOp.WAIT


def test_policy_config_rebuilds_an_identical_bundle() -> None:
    policy = HeuristicPolicyBundle(slot_config=SLOTS, topology="cnn", embargo_epochs_after_prune=5)
    rebuilt = HeuristicPolicyBundle(slot_config=SLOTS, **json.loads(json.dumps(policy.policy_config)))
    assert rebuilt.config == policy.config and rebuilt.topology == "cnn"
    assert policy.policy_config["embargo_epochs_after_prune"] == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"topology": "transformer", "blueprint_rotation": ["conv_light"]}, ValueError, "conv_light"),
        ({"blueprint_rotation": []}, ValueError, "non-empty"),
        ({"topology": "rnn"}, ValueError, "rnn"),
        ({"feature_dim": 7}, ValueError, "feature_dim 7"),
        ({"penalty_decay": 0.0}, ValueError, "penalty_decay"),
        ({"plateu_epochs": 3}, TypeError, "plateu_epochs"),
    ],
)
def test_rejects_bad_construction(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        HeuristicPolicyBundle(slot_config=SLOTS, **kwargs)  # type: ignore[arg-type]


def test_waits_until_host_stabilises_then_germinates_on_plateau() -> None:
    runner = Runner()
    falling = (1.0, 0.8, 0.64, 0.51, 0.41)  # 20 % better every epoch: not stable
    assert runner.step(10, losses=falling)["op"] == LifecycleOp.WAIT
    assert runner.memory.stabilised.item() == 0.0
    action = runner.step(11)  # stable losses and a plateau
    assert action["op"] == LifecycleOp.GERMINATE
    assert action["slot"] == 0
    assert action["blueprint"] == BlueprintAction.NORM  # first of the MLP rotation
    assert (action["style"], action["tempo"], action["alpha_target"]) == (int(GerminationStyle.SIGMOID_ADD), 1, 2)
    assert (action["alpha_speed"], action["alpha_curve"]) == (0, 0)


def test_stabilisation_latches_for_the_episode() -> None:
    runner = Runner()
    rising = (70.0, 72.0, 74.0, 76.0, 78.0)  # stable losses, but no plateau yet
    assert runner.step(10, accuracies=rising)["op"] == LifecycleOp.WAIT
    assert runner.memory.stabilised.item() == 1.0
    noisy = (0.5, 0.6, 0.4, 0.5, 0.3)  # unstable now; the latch holds
    assert runner.step(11, losses=noisy)["op"] == LifecycleOp.GERMINATE


@pytest.mark.parametrize(
    ("epoch", "accuracies"),
    [(2, PLATEAU_ACC), (10, (80.0, 80.1, 81.0, 81.2, 81.4)), (10, (80.0, 80.1, 80.2))],
)
def test_waits_when_too_early_or_not_on_a_plateau(epoch: int, accuracies: Sequence[float]) -> None:
    # plateau of 2 epochs only (after a 1-point jump), or only 3 known accuracies (2 deltas), or epoch < 3
    assert Runner().step(epoch, accuracies=accuracies)["op"] == LifecycleOp.WAIT


def test_advances_through_the_lifecycle_when_auto_advance_is_off() -> None:
    manual = {"auto_advance": False}
    runner = Runner()
    germinated = {1: Seed(SeedStage.GERMINATED)}
    placeholders = _placeholders(runner.policy, make_masks(germinated, **manual))
    assert runner.step(12, germinated, manual) == {**placeholders, "op": LifecycleOp.ADVANCE, "slot": 1}
    assert runner.step(13, {1: Seed(SeedStage.TRAINING)}, manual)["op"] == LifecycleOp.ADVANCE
    ramping = Seed(SeedStage.BLENDING, alpha=0.4, alpha_target=1.0, alpha_mode=AlphaMode.UP, epochs_in_stage=2)
    assert runner.step(14, {1: ramping}, manual)["op"] == LifecycleOp.WAIT
    done = Seed(SeedStage.BLENDING, alpha=1.0, alpha_target=1.0, epochs_in_stage=5)
    action = runner.step(15, {1: done}, manual)
    assert (action["op"], action["slot"]) == (LifecycleOp.ADVANCE, 1)
    # with auto-advance on, ADVANCE is masked and the heuristic waits instead
    assert runner.step(16, {1: done})["op"] == LifecycleOp.WAIT


def _placeholders(policy: HeuristicPolicyBundle, masks: ActionMasks) -> dict[str, int]:
    """Canonical placeholders of every head under these masks (what irrelevant heads must hold)."""
    space = policy.action_space
    return {h: int(space.canonical_action(h, masks.heads[h])[0]) for h in space.head_names}


def test_fossilizes_a_positive_contributor_and_prunes_a_negative_one() -> None:
    good = Seed(SeedStage.HOLDING, alpha=1.0, contribution=2.0, epochs_in_stage=2)
    action = Runner().step(20, {2: good})
    assert (action["op"], action["slot"]) == (LifecycleOp.FOSSILIZE, 2)
    bad = Seed(SeedStage.HOLDING, alpha=1.0, contribution=-1.0, epochs_in_stage=2)
    action = Runner().step(20, {2: bad})
    assert (action["op"], action["slot"]) == (LifecycleOp.PRUNE, 2)
    assert (action["alpha_speed"], action["alpha_curve"]) == (0, 0)  # instant, linear placeholders
    unmeasured = Seed(SeedStage.HOLDING, alpha=1.0, contribution=None, epochs_in_stage=2)
    assert Runner().step(20, {2: unmeasured})["op"] == LifecycleOp.WAIT


def test_prunes_a_training_seed_after_an_accuracy_drop() -> None:
    runner = Runner()
    assert runner.step(10, {0: Seed(SeedStage.TRAINING)}, accuracies=(80.0,) * 5)["op"] == LifecycleOp.WAIT
    dropped = (80.0, 79.0, 78.5, 78.0, 77.5)  # 2.5 points below the stage start
    early = runner.step(11, {0: Seed(SeedStage.TRAINING, epochs_in_stage=2)}, accuracies=dropped)
    assert early["op"] == LifecycleOp.WAIT  # ADVANCE is auto, and 2 epochs is too early to judge
    action = runner.step(12, {0: Seed(SeedStage.TRAINING, epochs_in_stage=3)}, accuracies=dropped)
    assert (action["op"], action["slot"]) == (LifecycleOp.PRUNE, 0)


def test_prunes_ransomware_instead_of_fossilizing() -> None:
    runner = Runner()
    runner.step(10, {0: Seed(SeedStage.BLENDING, alpha=0.5, alpha_mode=AlphaMode.UP)}, accuracies=(80.0,) * 5)
    holding = Seed(SeedStage.HOLDING, alpha=1.0, contribution=3.0, epochs_in_stage=1)
    action = runner.step(14, {0: holding}, accuracies=(80.0, 79.8, 79.6, 79.5, 79.4))
    assert action["op"] == LifecycleOp.PRUNE


def test_respects_the_embargo_after_a_prune() -> None:
    runner = Runner()
    bad = Seed(SeedStage.HOLDING, alpha=1.0, contribution=-1.0)
    assert runner.step(10, {0: bad})["op"] == LifecycleOp.PRUNE
    assert runner.memory.last_prune.item() == 11.0  # epoch + 1
    assert runner.step(11)["op"] == LifecycleOp.WAIT
    assert runner.step(12)["op"] == LifecycleOp.WAIT
    assert runner.step(13)["op"] == LifecycleOp.GERMINATE  # 3 epochs later


def test_memory_resets_with_initial_hidden() -> None:
    runner = Runner()
    runner.step(10, {0: Seed(SeedStage.HOLDING, alpha=1.0, contribution=-1.0)})
    assert runner.step(11)["op"] == LifecycleOp.WAIT  # embargoed
    runner.hidden = runner.policy.initial_hidden(1)  # new episode
    assert torch.count_nonzero(runner.hidden[0]) == 0  # type: ignore[index]
    assert runner.step(11)["op"] == LifecycleOp.GERMINATE


def test_rotates_blueprints_and_skips_penalised_ones() -> None:
    runner = Runner(penalty_decay=1.0, penalty_threshold=2.0, embargo_epochs_after_prune=0)
    fossil = {0: Seed(SeedStage.FOSSILIZED, alpha=1.0)}
    # a NORM seed (the rotation's first blueprint) fails: NORM is now penalised
    assert runner.step(10, {0: Seed(SeedStage.HOLDING, blueprint=BlueprintAction.NORM, contribution=-1.0)})["op"] == 3
    assert runner.memory.penalties[0, BlueprintAction.NORM].item() == 2.0
    chosen = [runner.step(11 + i, fossil)["blueprint"] for i in range(5)]
    mlp_rotation = [BlueprintAction.MLP_SMALL, BlueprintAction.LORA, BlueprintAction.ATTENTION, BlueprintAction.MLP]
    assert chosen == [*mlp_rotation, BlueprintAction.MLP_SMALL]  # NORM skipped on every lap


def test_all_penalised_falls_back_to_lowest_penalty_then_name() -> None:
    rotation = ("norm", "attention", "lora")
    runner = Runner(penalty_decay=1.0, penalty_threshold=1.0, embargo_epochs_after_prune=0, blueprint_rotation=rotation)
    failures = [BlueprintAction.NORM, BlueprintAction.NORM, BlueprintAction.LORA, BlueprintAction.ATTENTION]
    for epoch, blueprint in enumerate(failures):
        runner.step(epoch + 3, {0: Seed(SeedStage.HOLDING, blueprint=blueprint, contribution=-1.0)})
    # penalties: norm 4, lora 2, attention 2 -> order (attention, lora, norm); rotation index 0, 1, 2, 0
    chosen = [runner.step(10 + i)["blueprint"] for i in range(4)]
    assert chosen == [BlueprintAction.ATTENTION, BlueprintAction.LORA, BlueprintAction.NORM, BlueprintAction.ATTENTION]


def test_penalties_decay_once_per_epoch_not_per_call() -> None:
    runner = Runner()
    runner.step(10, {0: Seed(SeedStage.HOLDING, blueprint=BlueprintAction.LORA, contribution=-1.0)})
    assert runner.memory.penalties[0, BlueprintAction.LORA].item() == 2.0
    runner.step(10)  # same epoch again: no decay
    assert runner.memory.penalties[0, BlueprintAction.LORA].item() == 2.0
    runner.step(12)  # two epochs later: 2 * 0.5 ** 2
    assert runner.memory.penalties[0, BlueprintAction.LORA].item() == 0.5
    runner.step(15)  # 0.0625 < floor 0.1: forgotten
    assert runner.memory.penalties[0, BlueprintAction.LORA].item() == 0.0


def test_batch_equals_per_environment_decisions() -> None:
    cases = [
        (11, None),
        (11, {1: Seed(SeedStage.HOLDING, alpha=1.0, contribution=2.0)}),
        (2, None),
        (20, {0: Seed(SeedStage.FOSSILIZED, alpha=1.0), 2: Seed(SeedStage.HOLDING, alpha=1.0, contribution=-3.0)}),
    ]
    policy = HeuristicPolicyBundle(slot_config=SLOTS, topology="mlp")
    built = [make_features(epoch, seeds=seeds) for epoch, seeds in cases]
    masks = [make_masks(seeds) for _, seeds in cases]
    batch = Observation(torch.stack([f for f, _ in built]), torch.stack([b for _, b in built]))
    batched_masks = type(masks[0])(
        {h: torch.cat([m.heads[h] for m in masks]) for h in masks[0].heads},
        torch.cat([m.slot_by_op for m in masks]),  # type: ignore[misc]
    )
    together = policy.get_action(batch, batched_masks)
    for i, (features, blueprints) in enumerate(built):
        alone = policy.get_action(Observation(features[None], blueprints[None]), masks[i])
        for head in policy.action_space.head_names:
            assert together.actions[head][i] == alone.actions[head][0], (i, head)
        assert torch.equal(together.hidden[0][:, i], alone.hidden[0][:, 0])  # type: ignore[index]
    assert [int(o) for o in together.actions["op"]] == [1, 4, 0, 3]
    outputs = [*together.log_probs.values(), *together.entropies.values(), together.value]
    assert all(torch.equal(v, torch.zeros(4)) for v in outputs)


_STAGES = [
    None,
    SeedStage.GERMINATED,
    SeedStage.TRAINING,
    SeedStage.BLENDING,
    SeedStage.HOLDING,
    SeedStage.FOSSILIZED,
    SeedStage.PRUNED,
    SeedStage.EMBARGOED,
    SeedStage.RESETTING,
]
_unit = st.floats(-1.0, 1.0, allow_nan=False)


@st.composite
def _env(draw: st.DrawFn, num_slots: int) -> tuple[dict[int, Seed], dict[str, object], int, list[float], list[float]]:
    seeds = {}
    for k in range(num_slots):
        stage = draw(st.sampled_from(_STAGES))
        if stage is not None:
            seeds[k] = Seed(
                stage=stage,
                blueprint=draw(st.sampled_from(list(BlueprintAction)[1:])),
                alpha=draw(st.floats(0.0, 1.0)),
                alpha_target=draw(st.sampled_from([0.5, 0.7, 1.0])),
                alpha_mode=draw(st.sampled_from(list(AlphaMode))),
                contribution=draw(st.none() | st.floats(-10.0, 10.0)),
                epochs_in_stage=draw(st.integers(0, L)),
                age=draw(st.integers(0, L)),
            )
    enabled = draw(st.lists(st.sampled_from(range(num_slots)), min_size=1, unique=True))
    mask_kwargs = {
        "auto_advance": draw(st.booleans()),
        "max_seeds": draw(st.integers(0, 3)),
        "total_seeds": draw(st.integers(0, 4)),
        "enabled_slots": [f"r0c{k}" for k in sorted(enabled)],
    }
    accuracies = draw(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=5))
    losses = draw(st.lists(st.floats(0.0, 50.0), min_size=1, max_size=5))
    return seeds, mask_kwargs, draw(st.integers(0, L)), accuracies, losses


@given(data=st.data(), num_slots=st.integers(1, 4), batch=st.integers(1, 3))
def test_actions_are_always_mask_valid_and_deterministic(data: st.DataObject, num_slots: int, batch: int) -> None:
    slots = SlotConfig.for_count(num_slots)
    layout = ObservationLayout(slots)
    topology = data.draw(st.sampled_from(["mlp", "cnn"]))  # "cnn": the rotation is masked out, fallback path
    policy = HeuristicPolicyBundle(slot_config=slots, topology=topology, penalty_decay=1.0)
    envs = [data.draw(_env(num_slots)) for _ in range(batch)]
    features = torch.zeros(batch, layout.size)
    blueprints = torch.full((batch, num_slots), -1, dtype=torch.long)
    per_env_masks = []
    for b, (seeds, mask_kwargs, epoch, accuracies, losses) in enumerate(envs):
        features[b], blueprints[b] = make_features(epoch, accuracies, losses, seeds, layout)
        states = {sid: None for sid in slots.slot_ids}
        for k, seed in seeds.items():
            states[slots.slot_ids[k]] = SlotState(int(seed.stage), seed.age, int(seed.alpha_mode))
        env_masks = compute_action_masks(
            states,
            slot_config=slots,
            topology="mlp",
            **mask_kwargs,  # type: ignore[arg-type]
        )
        per_env_masks.append(env_masks)
    masks = stack_masks(per_env_masks)
    obs = Observation(features, blueprints)
    hidden = policy.initial_hidden(batch)
    for _ in range(3):  # a few steps so memory (penalties, embargo) takes part
        first = policy.get_action(obs, masks, hidden)
        again = policy.get_action(obs, masks, hidden)
        for head, action in first.actions.items():
            assert torch.equal(action, again.actions[head])
            assert action.dtype == torch.int64 and action.shape == (batch,)
            assert masks.heads[head].gather(1, action.unsqueeze(1)).all(), head
        slot_row = masks.slot_by_op[torch.arange(batch), first.actions["op"]]  # type: ignore[index]
        assert slot_row.gather(1, first.actions["slot"].unsqueeze(1)).all()
        assert torch.equal(first.hidden[0], again.hidden[0])  # type: ignore[index]
        hidden = first.hidden


def _arbitrary_masks(space: ActionSpace, batch: int, generator: torch.Generator) -> ActionMasks:
    """Random masks that keep only the contract's invariants: every head row allows something,
    ``slot_by_op`` rows are subsets of the slot mask, and every valid op has a valid slot (WAIT may be masked)."""
    heads = {}
    for head, size in space.sizes().items():
        mask = torch.rand(batch, size, generator=generator) < 0.4
        mask[torch.arange(batch), torch.randint(0, size, (batch,), generator=generator)] = True
        heads[head] = mask
    num_slots = space.size("slot")
    slot_by_op = (torch.rand(batch, space.num_ops, num_slots, generator=generator) < 0.4) & heads["slot"][:, None]
    first_slot = torch.nn.functional.one_hot(heads["slot"].to(torch.int8).argmax(-1), num_slots).bool()
    slot_by_op |= (heads["op"] & ~slot_by_op.any(-1))[..., None] & first_slot[:, None]
    return ActionMasks(heads, slot_by_op)


@given(seed=st.integers(0, 2**31 - 1), num_slots=st.integers(1, 4), topology=st.sampled_from(["mlp", "cnn"]))
def test_actions_are_valid_under_arbitrary_masks(seed: int, num_slots: int, topology: str) -> None:
    """Masks unrelated to the observation (any op set, WAIT included or not); stages are random too."""
    generator = torch.Generator().manual_seed(seed)
    slots = SlotConfig.for_count(num_slots)
    layout = ObservationLayout(slots)
    policy = HeuristicPolicyBundle(slot_config=slots, topology=topology)
    batch = 6
    features = torch.rand(batch, layout.size, generator=generator) * 2 - 1
    for k in range(num_slots):
        stage = layout.slot(k, "stage")
        features[:, stage] = 0.0
        drawn = torch.randint(0, len(STAGE_ORDER), (batch,), generator=generator)
        features[torch.arange(batch), stage.start + drawn] = 1.0
    blueprints = torch.randint(-1, len(BlueprintAction), (batch, num_slots), generator=generator)
    masks = _arbitrary_masks(policy.action_space, batch, generator)
    hidden = policy.initial_hidden(batch)
    for _ in range(3):
        result = policy.get_action(Observation(features, blueprints), masks, hidden)
        for head, action in result.actions.items():
            assert masks.heads[head].gather(1, action[:, None]).all(), head
        slot_row = masks.slot_by_op[torch.arange(batch), result.actions["op"]]  # type: ignore[index]
        assert slot_row.gather(1, result.actions["slot"][:, None]).all()
        hidden = result.hidden


def test_rejects_a_valid_op_without_a_slot_and_unknown_blueprints() -> None:
    policy = HeuristicPolicyBundle(slot_config=SLOTS)
    features, blueprints = make_features(10)
    masks = make_masks()
    no_slot = masks.slot_by_op.clone()  # type: ignore[union-attr]
    no_slot[0, int(LifecycleOp.WAIT)] = False
    with pytest.raises(EmptyMaskError, match="slot_by_op"):
        policy.get_action(Observation(features[None], blueprints[None]), ActionMasks(masks.heads, no_slot))
    blueprints[1] = len(BlueprintAction)
    expected = r"blueprint_indices must be -1 \(empty slot\) or in \[0, 13\), got \[13\]"
    with pytest.raises(ValueError, match=expected):
        policy.get_action(Observation(features[None], blueprints[None]), masks)


def test_noisy_accuracy_without_a_new_best_counts_as_plateau() -> None:
    # epoch-to-epoch swings of 1-2 points, but nothing beats 65.0 by 0.5: a 4-epoch plateau
    assert Runner().step(17, accuracies=(65.0, 63.3, 62.8, 65.0, 65.4))["op"] == LifecycleOp.GERMINATE
    # a new best (+0.6 over 65.0) restarts the count
    assert Runner().step(17, accuracies=(65.0, 63.3, 62.8, 65.6, 65.4))["op"] == LifecycleOp.WAIT


@pytest.mark.parametrize("losses", [(0.0,) * 5, (float("inf"),) * 5, (0.5, float("nan"), 0.5, 0.5, 0.5)])
def test_degenerate_losses_never_count_as_stable(losses: Sequence[float]) -> None:
    runner = Runner()
    assert runner.step(10, losses=losses)["op"] == LifecycleOp.WAIT
    assert runner.memory.stabilised.item() == 0.0


def test_rejects_mis_shaped_inputs() -> None:
    policy = HeuristicPolicyBundle(slot_config=SLOTS)
    features, blueprints = make_features(10)
    obs = Observation(features[None], blueprints[None])
    with pytest.raises(ValueError, match=r"obs.features must be a float \[B, F\] tensor with F=116"):
        policy.get_action(Observation(features[None, :-1], blueprints[None]), make_masks())
    with pytest.raises(ValueError, match="slot_by_op"):
        policy.get_action(obs, ActionMasks(make_masks().heads))
    with pytest.raises(ValueError, match=r"hidden tensors must be \[layers, 1, 26\]"):
        policy.get_action(obs, make_masks(), policy.initial_hidden(2))
