"""The ``digits-varied`` benchmark: each episode's host is drawn from its reset seed and shown in the observation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from esper.simic.env import HOST_PRESETS, EnvConfig, HostTraining, MorphogeneticEnv, load_digits
from esper.simic.env.hosts import HostPreset, build_host, host_param_count
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
        assert v.preset.normalised == tuple(b for b in range(3) if b != v.bottleneck)  # all but the bottleneck
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


def test_a_normalised_block_ends_in_a_layer_norm_after_its_activation() -> None:
    preset = HostPreset((8, 2, 16), activation=True, normalised=(0, 2))
    host = build_host(
        "mlp", impaired=True, input_shape=(1, 8, 8), num_classes=10, generator=torch.Generator(), preset=preset
    )
    endings = [[type(layer) for layer in block][block.split :] for block in host.blocks]
    assert endings == [[nn.ReLU, nn.LayerNorm], [nn.ReLU], [nn.ReLU, nn.LayerNorm]]
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = host.block(0).second(host.block(0).first(x))  # the r0c0 activation: normalised per sample
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(5), atol=1e-5, rtol=0)
    plain = dataclasses.replace(preset, normalised=())
    extra = host_param_count("mlp", preset, input_shape=(1, 8, 8), num_classes=10)
    assert extra - host_param_count("mlp", plain, input_shape=(1, 8, 8), num_classes=10) == 2 * (8 + 16)


def test_deeper_grids_repeat_the_last_blocks_normalisation() -> None:
    assert HostPreset((8, 2, 16), normalised=(0, 2)).with_blocks(5).normalised == (0, 2, 3, 4)
    assert HostPreset((8, 16, 2), normalised=(0, 1)).with_blocks(5).normalised == (0, 1)


def test_a_normalised_index_outside_the_host_is_refused() -> None:
    with pytest.raises(ValueError, match=r"normalised blocks must index the 3 blocks, got \(3,\)"):
        HostPreset((8, 2, 16), normalised=(3,))
