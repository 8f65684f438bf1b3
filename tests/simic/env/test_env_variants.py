"""The ``digits-varied`` benchmark: each episode's host is drawn from its reset seed and shown in the observation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from esper.simic.env import HOST_PRESETS, EnvConfig, HostTraining, MorphogeneticEnv, load_digits
from esper.simic.env.variants import (
    FIRST_WIDTHS,
    LINEAR_BOTTLENECK,
    NONLINEAR_BOTTLENECK,
    WIDTHS,
    EpisodeVariant,
    draw_variant,
    episode_preset,
)
from esper.tamiyo.contract import ObservationLayout

SEEDS = range(64)
VARIED = EnvConfig(task="digits-varied", episode_length=2, host_training=HostTraining(batch_size=400))


@pytest.fixture(scope="module")
def env() -> MorphogeneticEnv:
    return MorphogeneticEnv(VARIED, data=load_digits())


def test_the_variant_is_a_function_of_the_seed() -> None:
    assert [draw_variant(s) for s in SEEDS] == [draw_variant(s) for s in SEEDS]
    assert len({draw_variant(s) for s in SEEDS}) > 20  # 2 positions x 10 width pairs x 2 activations


def test_variants_cover_every_kind_of_host() -> None:
    variants = [draw_variant(s) for s in SEEDS]
    assert {v.bottleneck for v in variants} == {1, 2}
    assert {v.nonlinear for v in variants} == {False, True}
    for v in variants:
        assert v.preset.widths[0] in FIRST_WIDTHS
        assert v.preset.widths[3 - v.bottleneck] in WIDTHS  # the block that is neither 0 nor the bottleneck
        assert v.preset.widths[v.bottleneck] == (NONLINEAR_BOTTLENECK if v.nonlinear else LINEAR_BOTTLENECK)
    assert {v.preset.widths[0] for v in variants} == set(FIRST_WIDTHS)
    assert {w for v in variants for w in v.preset.widths} == {2, 4, *WIDTHS}


def test_features_encode_each_slot_width_and_the_activation() -> None:
    variant = EpisodeVariant(2, dataclasses.replace(HOST_PRESETS[("mlp", True)], widths=(128, 8, 2)))
    assert variant.features(("r0c0", "r0c1", "r0c2")) == {
        "slot_width": [0.875, 0.375, 0.125],
        "host_nonlinear": [0.0],
    }
    assert variant.features(("r0c2", "r0c0"))["slot_width"] == [0.125, 0.875]  # slot-head order


def test_fixed_tasks_keep_their_preset() -> None:
    assert episode_preset(EnvConfig(task="digits"), 7) == HOST_PRESETS[("mlp", True)]
    assert episode_preset(VARIED, 7) == draw_variant(7).preset


def test_reset_builds_the_drawn_host_and_shows_it_at_epoch_0(env: MorphogeneticEnv) -> None:
    layout = ObservationLayout(VARIED.slot_config, episode_block=True)
    assert env.layout == layout and env.feature_dim == 120
    seen = {}
    for seed in (0, 1, 2, 3):
        reset = env.reset(seed)
        variant = draw_variant(seed)
        assert env.variant == variant
        assert env.model is not None and env.model.host.slot_shapes == tuple((w,) for w in variant.preset.widths)
        block = reset.obs.features[layout.episode("slot_width").start :].tolist()
        assert block == pytest.approx([*variant.features(VARIED.slot_ids)["slot_width"], float(variant.nonlinear)])
        seen[seed] = reset.obs.features
    assert len({tuple(v.preset.widths) for v in map(draw_variant, seen)}) > 1
    assert not torch.equal(seen[0], seen[1])


def test_same_seed_same_episode_start(env: MorphogeneticEnv) -> None:
    first = env.reset(5).obs.features.clone()
    env.reset(6)
    assert torch.equal(env.reset(5).obs.features, first)


def test_the_fixed_digits_task_has_no_episode_block() -> None:
    env = MorphogeneticEnv(EnvConfig(task="digits", episode_length=2), data=load_digits())
    env.reset(0)
    assert env.variant is None and env.feature_dim == 116 and not env.layout.episode_block
