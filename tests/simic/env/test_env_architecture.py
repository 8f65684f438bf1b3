"""Fixed architectures at reset: static seeds from epoch 0 and a widened host (the static baselines)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from esper.simic.env import (
    HOST_PRESETS,
    EnvConfig,
    EpisodeSummary,
    HostTraining,
    MorphogeneticEnv,
    SyntheticTask,
    build_host,
)
from esper.simic.env.architecture import FixedArchitecture, StaticSeed
from esper.simic.env.hosts import host_param_count, widened_preset
from esper.tamiyo.contract import AlphaAlgorithm, BlueprintAction, GerminationStyle, LifecycleOp, SeedStage

TINY = EnvConfig(
    task="synthetic",
    episode_length=4,
    synthetic=SyntheticTask(train_size=64, val_size=32),
    host_training=HostTraining(batch_size=32),
)
WAIT = {"slot": 0, "blueprint": 0, "style": 2, "tempo": 1, "alpha_target": 2, "alpha_speed": 0, "alpha_curve": 0}


def _play_wait(env: MorphogeneticEnv) -> EpisodeSummary:
    """WAIT until the episode started by the last ``reset`` ends."""
    while True:
        step = env.step({**WAIT, "op": int(LifecycleOp.WAIT)})
        if step.episode is not None:
            return step.episode


def test_static_seeds_are_fossilized_at_alpha_one_and_train_from_epoch_zero() -> None:
    env = MorphogeneticEnv(TINY)
    arch = FixedArchitecture({"r0c0": StaticSeed("mlp"), "r0c2": StaticSeed("lora", "gate")})
    env.reset(3, architecture=arch)
    assert env.model is not None
    r0c0, r0c2 = env.model.slot("r0c0"), env.model.slot("r0c2")
    assert (r0c0.stage, r0c0.alpha, r0c2.stage, r0c2.algorithm) == (
        SeedStage.FOSSILIZED,
        1.0,
        SeedStage.FOSSILIZED,
        AlphaAlgorithm.GATE,
    )
    before = [p.detach().clone() for p in r0c0.seed.parameters()]  # type: ignore[union-attr]
    summary = _play_wait(env)
    after = list(r0c0.seed.parameters())  # type: ignore[union-attr]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # it trained with the host
    seed_params = r0c0.num_params + r0c2.num_params
    assert summary.seed_params == seed_params and summary.fossilized == 0
    assert summary.final_blueprints == {"r0c0": "mlp", "r0c2": "lora"}
    assert summary.final_algorithms == {"r0c0": "add", "r0c2": "gate"}
    assert summary.extra_compute == pytest.approx(4 * seed_params / summary.host_params)


def test_a_static_seed_has_the_parameters_of_the_germinated_one() -> None:
    """Gate included: the static network's size equals the grown one's."""
    env = MorphogeneticEnv(TINY)
    env.reset(0)
    assert env.model is not None
    action = {**WAIT, "op": int(LifecycleOp.GERMINATE), "blueprint": int(BlueprintAction.MLP_SMALL)}
    env.step({**action, "slot": 1, "style": int(GerminationStyle.GATED_GATE)})
    grown = env.model.slot("r0c1").num_params
    env.reset(0, architecture=FixedArchitecture({"r0c1": StaticSeed("mlp_small", "gate")}))
    assert env.model.slot("r0c1").num_params == grown > 0


def test_a_widened_host_is_built_at_reset() -> None:
    env = MorphogeneticEnv(TINY)
    info = env.reset(1, architecture=FixedArchitecture(host_widths=(32, 4, 32))).info
    preset = dataclasses.replace(HOST_PRESETS[("mlp", True)], widths=(32, 4, 32))
    wide = host_param_count("mlp", preset, input_shape=(1, 8, 8), num_classes=10)
    assert info.host_params == wide > env.reset(1).info.host_params


def test_unknown_slots_and_blueprints_are_rejected() -> None:
    env = MorphogeneticEnv(dataclasses.replace(TINY, slot_ids=("r0c0", "r0c1")))
    with pytest.raises(ValueError, match="r0c2"):
        env.reset(0, architecture=FixedArchitecture({"r0c2": StaticSeed("mlp")}))
    with pytest.raises(ValueError, match="unknown blueprint"):
        StaticSeed("resnet")


@pytest.mark.parametrize(("topology", "impaired"), [("mlp", True), ("mlp", False), ("cnn", True), ("cnn", False)])
def test_host_param_count_matches_a_built_host(topology: str, impaired: bool) -> None:
    preset = HOST_PRESETS[(topology, impaired)]
    host = build_host(topology, impaired=impaired, input_shape=(1, 8, 8), num_classes=10, generator=torch.Generator())
    assert host_param_count(topology, preset, input_shape=(1, 8, 8), num_classes=10) == host.num_params


@pytest.mark.parametrize(("topology", "impaired"), [("mlp", True), ("cnn", True), ("cnn", False)])
@pytest.mark.parametrize("growth", [1.0, 1.3, 2.0, 5.0])
def test_widened_preset_is_within_a_few_percent_of_the_target(topology: str, impaired: bool, growth: float) -> None:
    preset = HOST_PRESETS[(topology, impaired)]
    shape = {"input_shape": (1, 8, 8), "num_classes": 10}
    base = host_param_count(topology, preset, **shape)  # type: ignore[arg-type]
    target = round(base * growth)
    wide = widened_preset(topology, preset, target, **shape)  # type: ignore[arg-type]
    assert abs(host_param_count(topology, wide, **shape) - target) <= 0.05 * target  # type: ignore[arg-type]
    assert (wide.kernel_size, wide.activation) == (preset.kernel_size, preset.activation)
    if growth == 1.0:
        assert wide == preset
