"""Slot grids: row 1 inside each host block, columns as blocks, hosts growing to the grid, 10-slot environments."""

from __future__ import annotations

import pytest
import torch
from scripted_actions import WAIT
from seed_walk import nudge_into_blending
from tiny_hosts import HOSTS, TOKENS, VOCAB, tiny_model
from torch import nn

from esper.simic.env import EnvConfig, HostTraining, MorphogeneticEnv, SyntheticTask, VectorEnv, VectorStep
from esper.simic.env.hosts import HOST_PRESETS, HostNetwork, SplitSequential
from esper.simic.env.model import MorphogeneticModel
from esper.simic.training.rollout import PolicyActor, play_round
from esper.tamiyo.contract import (
    BlueprintAction,
    GerminationStyle,
    LifecycleOp,
    SeedStage,
    feature_size,
    topology_blueprints,
)
from esper.tamiyo.policy import create_policy

#: 2 rows x 5 columns, the reference's 10-slot configuration.
GRID = tuple(f"r{row}c{col}" for row in range(2) for col in range(5))


def _inputs(topology: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if topology == "transformer":
        return torch.randint(0, VOCAB, (4, TOKENS), generator=g)
    return torch.randn(4, 1, 8, 8, generator=g)


def test_hosts_grow_blocks_to_the_grid_columns() -> None:
    assert EnvConfig().num_host_blocks == 3 and EnvConfig(slot_ids=("r1c0",)).num_host_blocks == 3
    assert EnvConfig(slot_ids=GRID).num_host_blocks == 5
    impaired = HOST_PRESETS[("mlp", True)]
    assert impaired.with_blocks(5).widths == (16, 2, 16, 16, 16)
    assert impaired.with_blocks(2) is impaired  # never shrinks: the default grid keeps its 3-block host
    model = tiny_model("cnn", GRID, preset=HOSTS["cnn"].with_blocks(5))
    assert len(model.host.blocks) == 5
    assert [shape[1] for shape in model.host.slot_shapes] == [8, 4, 2, 2, 2]  # pooling stops at 2x2
    assert model(_inputs("cnn")).shape == (4, 10)


@pytest.mark.parametrize("slot_id", ["r0c3", "r2c0"])
def test_a_slot_the_host_lacks_is_one_line(slot_id: str) -> None:
    with pytest.raises(ValueError, match=rf"slot '{slot_id}' is not a position of this mlp host") as info:
        tiny_model("mlp", ("r0c0", slot_id))
    assert str(info.value).endswith("it has r0c0..r1c2 (2 rows x 3 columns)")


def _slot_inputs(model: MorphogeneticModel, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """``(slot id, activation it received)`` in the order the forward pass reached the slots."""
    seen: list[tuple[str, torch.Tensor]] = []
    hooks = [
        slot.register_forward_pre_hook(lambda _m, args, sid=slot.slot_id: seen.append((sid, args[0].detach())))
        for slot in model.all_slots()
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("topology", ["mlp", "cnn"])
def test_row_1_is_the_pre_activation_and_comes_first(topology: str) -> None:
    model = tiny_model(topology, ("r0c0", "r0c1", "r1c0", "r1c1"))
    model.eval()
    seen = _slot_inputs(model, _inputs(topology))
    assert [sid for sid, _ in seen] == ["r1c0", "r0c0", "r1c1", "r0c1"]
    acts = dict(seen)
    for col in (0, 1):
        inside, output = acts[f"r1c{col}"], acts[f"r0c{col}"]
        assert inside.shape == output.shape and bool((inside < 0).any())  # before the ReLU
        assert torch.equal(output, torch.relu(inside))


def test_transformer_row_1_sits_between_attention_and_mlp() -> None:
    model = tiny_model("transformer", ("r0c0", "r1c0", "r1c1"))
    x = _inputs("transformer")
    seen = _slot_inputs(model, x)
    assert [sid for sid, _ in seen] == ["r1c0", "r0c0", "r1c1"]
    acts = dict(seen)
    block = model.host.block(0)
    with torch.no_grad():
        assert torch.equal(acts["r1c0"], block.first(x))  # embedding + attention sub-layer
        assert torch.equal(acts["r0c0"], block.second(acts["r1c0"]))  # + MLP sub-layer
    assert not torch.equal(acts["r1c0"], acts["r0c0"])


@pytest.mark.parametrize(
    "topology,blueprint", [(t, bp) for t in HOSTS for bp in topology_blueprints(t)], ids=lambda v: getattr(v, "name", v)
)
def test_a_zero_initialised_row_1_seed_changes_no_output(topology: str, blueprint: BlueprintAction) -> None:
    model = tiny_model(topology, ("r0c1", "r1c1"))
    model.eval()
    x = _inputs(topology)
    with torch.no_grad():
        before = model(x)
    slot = model.slot("r1c1")
    slot.germinate(blueprint, GerminationStyle.LINEAR_ADD, 3, 1.0, torch.Generator().manual_seed(2), 0.0)
    assert slot.stage == SeedStage.GERMINATED
    with torch.no_grad():
        assert torch.equal(model(x), before)
        assert torch.equal(model.forward_configs(x, {"r1c1": [0.0, 1.0]})[1], before)  # s(h) == h even at alpha 1


def test_counterfactuals_on_a_row_1_seed_compose_with_row_0() -> None:
    model = tiny_model("mlp", ("r0c1", "r1c1"))
    x = _inputs("mlp")
    model.eval()
    with torch.no_grad():
        before = model(x)
    slot = model.slot("r1c1")
    slot.germinate(BlueprintAction.LORA, GerminationStyle.LINEAR_ADD, 2, 0.5, torch.Generator().manual_seed(2), 0.0)
    nudge_into_blending(slot, 0.2)
    assert slot.stage == SeedStage.BLENDING and 0.0 < slot.alpha < 1.0
    with torch.no_grad():
        stacked = model.forward_configs(x, {"r1c1": [0.0, slot.alpha]})
        assert torch.equal(stacked[0], before)
        # The stacked pass runs twice the batch through each Linear, so a CPU may choose another
        # kernel (ATEN_CPU_CAPABILITY=default does): equal to float32 rounding, not bit for bit.
        torch.testing.assert_close(stacked[1], model(x), rtol=1e-6, atol=1e-6)
        assert not torch.equal(stacked[1], before)


GRID_CONFIG = EnvConfig(
    task="synthetic",
    synthetic=SyntheticTask(train_size=64, val_size=32),
    host_training=HostTraining(batch_size=32),
    episode_length=3,
    slot_ids=GRID,
)


def test_a_10_slot_environment_sizes_observations_actions_and_masks_from_the_grid() -> None:
    env = MorphogeneticEnv(GRID_CONFIG)
    reset = env.reset(seed=0)
    assert env.model is not None and len(env.model.host.blocks) == 5
    assert env.feature_dim == feature_size(10) and reset.obs.features.shape == (feature_size(10),)
    assert env.action_space.sizes()["slot"] == 10
    assert reset.masks.slot_by_op is not None and reset.masks.slot_by_op.shape == (6, 10)
    slot = GRID.index("r1c4")
    step = env.step({**WAIT, "op": int(LifecycleOp.GERMINATE), "slot": slot, "blueprint": int(BlueprintAction.LORA)})
    assert step.info.executed_op == LifecycleOp.GERMINATE
    assert env.model.slot("r1c4").stage == SeedStage.TRAINING  # germinated, then auto-advanced
    stages = {sid: env.layout.read(step.obs.features, "stage", slot=sid) for sid in ("r1c4", "r0c4")}
    assert not torch.equal(stages["r1c4"], stages["r0c4"])  # the seed shows at its own grid position
    assert step.obs.blueprint_indices.tolist()[slot] == int(BlueprintAction.LORA)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("heuristic", {"topology": "mlp"}),
        ("lstm", {"hidden_size": 16, "lstm_hidden": 16}),
        ("mlp", {"hidden_size": 16}),
    ],
)
def test_every_built_in_policy_plays_the_10_slot_grid_with_valid_actions(name: str, kwargs: dict[str, object]) -> None:
    venv = VectorEnv(GRID_CONFIG, num_envs=2)
    policy = create_policy(name, slot_config=venv.slot_config, feature_dim=venv.feature_dim, **kwargs)
    actor = PolicyActor(policy, 2, generator=torch.Generator().manual_seed(0), deterministic=False)
    steps: list[VectorStep] = []
    play_round(venv, actor, [0, 1], on_step=steps.append)
    assert len(steps) == 3
    assert all(info is not None and info.action_valid for step in steps for info in step.infos)


def test_a_host_block_without_stages_is_refused() -> None:
    with pytest.raises(TypeError, match=r"host block 1 \(Identity\) lacks the HostBlock stages first/second"):
        HostNetwork("mlp", [SplitSequential(1, nn.Flatten()), nn.Identity()], nn.Linear(2, 2), ((2,), (2,)))
