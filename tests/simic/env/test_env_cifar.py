"""CIFAR-10 as the field trains it: fixed channel normalisation, crop + flip augmentation, the CIFAR host preset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scripted_actions import WAIT

from esper.simic.env import CifarTask, EnvConfig, MorphogeneticEnv, build_host, host_preset
from esper.simic.env.augment import CropFlip
from esper.simic.env.datasets import CIFAR10_MEAN, CIFAR10_STD, load_cifar10, load_task, write_cifar10_batches
from esper.simic.env.hosts import HOST_PRESETS


def _reference_crop_flip(images: torch.Tensor, padding: int, fill: float, generator: torch.Generator) -> torch.Tensor:
    """Per-sample loop with the same draws as :class:`CropFlip` (offsets ``[B, 2]``, then flips ``[B]``)."""
    batch, _, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (batch, 2), generator=generator)
    flips = torch.randint(0, 2, (batch,), generator=generator)
    padded = torch.nn.functional.pad(images, (padding,) * 4, value=fill)
    out = []
    for i in range(batch):
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[i, :, top : top + height, left : left + width]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def test_crop_flip_matches_the_per_sample_reference() -> None:
    images = torch.randn(16, 3, 6, 5)
    augment = CropFlip(2, (-1.5, -1.5, -1.5))
    out = augment(images, torch.Generator().manual_seed(3))
    assert out.shape == images.shape and out.dtype == torch.float32
    expected = _reference_crop_flip(images, 2, -1.5, torch.Generator().manual_seed(3))
    assert torch.equal(out, expected)
    assert not torch.equal(out, images)


def test_crop_flip_is_deterministic_under_a_seed() -> None:
    images = torch.randn(32, 3, 8, 8)
    augment = CropFlip(4, (0.0, 0.0, 0.0))
    a = augment(images, torch.Generator().manual_seed(7))
    b = augment(images, torch.Generator().manual_seed(7))
    c = augment(images, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_padding_zero_only_flips() -> None:
    images = torch.randn(64, 3, 4, 4)
    out = CropFlip(0, (0.0, 0.0, 0.0))(images, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images, strict=True)])
    assert bool((flipped | kept).all()) and 0 < int(flipped.sum()) < 64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_crop_flip_on_the_device_equals_cpu() -> None:
    images = torch.randn(8, 3, 32, 32)
    augment = CropFlip(4, (-2.0, -2.0, -2.0))
    on_cpu = augment(images, torch.Generator().manual_seed(1))
    on_gpu = augment(images.cuda(), torch.Generator().manual_seed(1))
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)


def test_a_known_pixel_is_normalised_with_the_constants(tmp_path: Path) -> None:
    root = write_cifar10_batches(tmp_path, per_batch=2, num_val=2, seed=0)
    with (root / "test_batch").open("rb") as f:
        batch = pickle.load(f)
    batch[b"data"][0, :3] = (255, 0, 128)  # red row 0, pixels 0-2
    batch[b"data"][0, 1024] = 51  # green, pixel (0, 0)
    with (root / "test_batch").open("wb") as f:
        pickle.dump(batch, f)
    val = load_cifar10(root).val_x
    assert float(val[0, 0, 0, 0]) == pytest.approx((1.0 - 0.4914) / 0.2470, abs=1e-6)
    assert float(val[0, 0, 0, 1]) == pytest.approx(-0.4914 / 0.2470, abs=1e-6)
    assert float(val[0, 0, 0, 2]) == pytest.approx((128 / 255 - 0.4914) / 0.2470, abs=1e-6)
    assert float(val[0, 1, 0, 0]) == pytest.approx((0.2 - 0.4822) / 0.2435, abs=1e-6)


def test_augmentation_is_a_task_setting(tmp_path: Path) -> None:
    root = str(write_cifar10_batches(tmp_path, per_batch=2, num_val=2, seed=0))
    augmentation = load_task(EnvConfig(task="cifar10", host="cnn", data_dir=root)).augmentation
    black = tuple(-m / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD, strict=True))
    assert augmentation == CropFlip(4, black)  # on by default, black padding in the normalised scale
    off = EnvConfig(task="cifar10", host="cnn", data_dir=root, cifar10=CifarTask(augment=False))
    assert load_task(off).augmentation is None
    assert load_task(EnvConfig(task="digits")).augmentation is None  # no other task augments
    with pytest.raises(ValueError, match="crop_padding"):
        CifarTask(crop_padding=-1)


def test_the_cifar_cnn_preset_leaves_the_digits_ones_alone() -> None:
    assert host_preset("cifar10", "cnn", False).widths == (32, 64, 128)
    assert host_preset("digits", "cnn", False) is HOST_PRESETS[("cnn", False)]
    assert host_preset("cifar10", "cnn", True) is HOST_PRESETS[("cnn", True)]
    host = build_host(
        "cnn",
        impaired=False,
        input_shape=(3, 32, 32),
        num_classes=10,
        generator=torch.Generator().manual_seed(0),
        preset=host_preset("cifar10", "cnn", False),
    )
    assert host.slot_shapes == ((32, 32, 32), (64, 16, 16), (128, 8, 8)) and host.num_params == 94_762


def test_validation_sees_the_normalised_images_and_training_the_augmented_ones(tmp_path: Path) -> None:
    root = str(write_cifar10_batches(tmp_path, per_batch=8, num_val=6, seed=1))
    config = EnvConfig(task="cifar10", host="cnn", data_dir=root, episode_length=2)
    env = MorphogeneticEnv(config)
    env.reset(0)
    assert env.model is not None
    seen: list[tuple[bool, torch.Tensor]] = []
    env.model.host.blocks[0][0].register_forward_pre_hook(  # the first layer sees the block's input
        lambda module, args: seen.append((module.training, args[0].detach().clone()))
    )
    env.step(WAIT)  # WAIT: one training epoch, one validation
    val_x, train_rows = env.data.val_x, env.data.train_x.flatten(1)
    val_inputs = [x for training, x in seen if not training]
    train_inputs = [x for training, x in seen if training]
    assert val_inputs and train_inputs
    for x in val_inputs:  # every counterfactual configuration sees exactly the stored validation images
        assert torch.equal(x.view(-1, *val_x.shape), val_x.expand(x.shape[0] // val_x.shape[0], *val_x.shape))
    for x in train_inputs:  # some training sample is not any stored image: it was cropped or flipped
        matches = (x.flatten(1)[:, None, :] == train_rows[None]).all(-1).any(-1)
        assert not bool(matches.all())
    assert np.isfinite(env.step(WAIT).reward)
