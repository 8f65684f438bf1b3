"""Tasks the host trains on, held as in-memory tensors (no DataLoader, nothing downloaded).

- ``digits``: the UCI "Optical Recognition of Handwritten Digits" set (1,797 8x8 grey images,
  10 classes, CC BY 4.0) as bundled in scikit-learn, shipped inside this package as
  ``data/digits.npz`` with a fixed 1,200/597 train/validation split (regenerate it with
  ``scripts/make_digits_data.py``).
- ``synthetic``: a seeded generator of any size (class prototypes plus noise), for tests.
- ``cifar10``: the standard CIFAR-10 python pickle batches read from a local directory.

Images are float32 ``[N, C, H, W]``, standardised with statistics of the training split;
labels are int64 ``[N]``. Every task is fixed by its config, so all episodes and all environments
see the same data; only the minibatch order depends on the episode seed.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from esper.simic.env.config import EnvConfig

#: Per-channel CIFAR-10 training-set mean and std (the usual CIFAR-10 normalisation).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"


class DataError(ValueError):
    """A dataset is missing or malformed (message names the path and what is wrong)."""


@dataclass(frozen=True, slots=True)
class TaskData:
    """Train and validation tensors of one classification task (read-only by convention: shared by envs)."""

    name: str
    """Task name (``digits``, ``synthetic``, ``cifar10``)."""
    train_x: torch.Tensor
    """float32 ``[N_train, C, H, W]``."""
    train_y: torch.Tensor
    """int64 ``[N_train]`` in ``[0, num_classes)``."""
    val_x: torch.Tensor
    """float32 ``[N_val, C, H, W]``."""
    val_y: torch.Tensor
    """int64 ``[N_val]``."""
    num_classes: int
    """Number of classes."""

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("val", self.val_x, self.val_y)):
            if x.dim() != 4 or x.dtype != torch.float32:
                raise DataError(f"{self.name}: {split}_x must be float32 [N, C, H, W], got {x.dtype} {tuple(x.shape)}")
            if y.shape != (x.shape[0],) or y.dtype != torch.int64:
                raise DataError(f"{self.name}: {split}_y must be int64 [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}")
            if x.shape[0] == 0:
                raise DataError(f"{self.name}: the {split} split is empty")
        if self.train_x.shape[1:] != self.val_x.shape[1:]:
            raise DataError(
                f"{self.name}: train and val images differ in shape: "
                f"{tuple(self.train_x.shape[1:])} vs {tuple(self.val_x.shape[1:])}"
            )
        labels = torch.cat([self.train_y, self.val_y])
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise DataError(
                f"{self.name}: labels must be in [0, {self.num_classes}), "
                f"got [{int(labels.min())}, {int(labels.max())}]"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device | str) -> TaskData:
        """Copy on ``device`` (the same object when already there)."""
        if self.train_x.device == torch.device(device):
            return self
        return TaskData(
            self.name,
            self.train_x.to(device),
            self.train_y.to(device),
            self.val_x.to(device),
            self.val_y.to(device),
            self.num_classes,
        )


def _standardised(
    name: str, train: np.ndarray, val: np.ndarray, train_y: np.ndarray, val_y: np.ndarray, num_classes: int
) -> TaskData:
    """Scale by the training split's per-channel mean/std (``[N, C, H, W]`` arrays)."""
    train_f = train.astype(np.float32)
    mean = train_f.mean(axis=(0, 2, 3), keepdims=True)
    std = train_f.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return _task(name, (train_f - mean) / std, (val.astype(np.float32) - mean) / std, train_y, val_y, num_classes)


def _task(
    name: str, train: np.ndarray, val: np.ndarray, train_y: np.ndarray, val_y: np.ndarray, num_classes: int
) -> TaskData:
    return TaskData(
        name=name,
        train_x=torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32)),
        train_y=torch.from_numpy(np.asarray(train_y, dtype=np.int64)),
        val_x=torch.from_numpy(np.ascontiguousarray(val, dtype=np.float32)),
        val_y=torch.from_numpy(np.asarray(val_y, dtype=np.int64)),
        num_classes=num_classes,
    )


def load_digits() -> TaskData:
    """The bundled digits task: train ``[1200, 1, 8, 8]``, val ``[597, 1, 8, 8]``, 10 classes."""
    resource = resources.files("esper.simic.env").joinpath("data").joinpath("digits.npz")
    with resources.as_file(resource) as path, np.load(path) as arrays:
        train_x, train_y = arrays["train_x"][:, None], arrays["train_y"]
        val_x, val_y = arrays["val_x"][:, None], arrays["val_y"]
    return _standardised("digits", train_x, val_x, train_y, val_y, 10)


def make_synthetic(
    num_train: int, num_val: int, *, seed: int, num_classes: int = 10, image_size: int = 8, noise: float = 1.0
) -> TaskData:
    """Seeded synthetic task: one random smooth prototype per class, samples = prototype + Gaussian noise.

    Learnable but not trivial at ``noise=1``; shapes ``[num_train, 1, image_size, image_size]`` and
    ``[num_val, 1, image_size, image_size]``. Same arguments → bit-identical tensors.
    """
    if num_train < 1 or num_val < 1 or num_classes < 2 or image_size < 2:
        raise ValueError(
            "need num_train, num_val >= 1, num_classes >= 2, image_size >= 2; "
            f"got {num_train}, {num_val}, {num_classes}, {image_size}"
        )
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((num_classes, 1, image_size, image_size))
    # Smooth each prototype with its 4-neighbourhood so nearby pixels correlate, like strokes do.
    prototypes = (
        prototypes + np.roll(prototypes, 1, -1) + np.roll(prototypes, 1, -2) + np.roll(prototypes, -1, -1)
    ) / 2.0
    labels = rng.integers(0, num_classes, size=num_train + num_val)
    images = prototypes[labels] + noise * rng.standard_normal((num_train + num_val, 1, image_size, image_size))
    return _task(
        "synthetic", images[:num_train], images[num_train:], labels[:num_train], labels[num_train:], num_classes
    )


def _cifar_root(data_dir: str | Path) -> Path:
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"CIFAR-10 data directory {str(root)!r} does not exist (Esper never downloads data)")
    nested = root / "cifar-10-batches-py"
    return nested if nested.is_dir() and not (root / _CIFAR_TEST_FILE).exists() else root


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch → images uint8 ``[n, 3, 32, 32]``, labels ``[n]``."""
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 batch file {str(path)!r}")
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")  # the standard (trusted, local) CIFAR-10 format
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError) as err:
        raise DataError(f"CIFAR-10 batch {str(path)!r} is not a readable pickle: {err}") from err
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 batch {str(path)!r} holds a {type(batch).__name__}, expected a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DataError(f"CIFAR-10 batch {str(path)!r} lacks the 'data' or 'labels' entry (keys: {list(batch)})")
    data, labels = np.asarray(data), np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DataError(
            f"CIFAR-10 batch {str(path)!r}: data {data.shape} / labels {labels.shape}, expected [n, 3072] / [n]"
        )
    return data.reshape(-1, 3, 32, 32).astype(np.uint8), labels.astype(np.int64)


def load_cifar10(data_dir: str | Path) -> TaskData:
    """CIFAR-10 from the python pickle batches in ``data_dir`` (or its ``cifar-10-batches-py`` subfolder).

    Returns train ``[n_train, 3, 32, 32]`` from ``data_batch_1..5`` and val from ``test_batch``,
    scaled to [0, 1] and normalised with the standard CIFAR-10 channel statistics.
    Raises ``DataError`` for a missing directory or file or a malformed batch.
    """
    root = _cifar_root(data_dir)
    train = [_read_cifar_batch(root / name) for name in _CIFAR_TRAIN_FILES]
    val_x, val_y = _read_cifar_batch(root / _CIFAR_TEST_FILE)
    mean = np.asarray(CIFAR10_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(1, 3, 1, 1)

    def scale(images: np.ndarray) -> np.ndarray:
        return (images.astype(np.float32) / 255.0 - mean) / std

    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return _task("cifar10", scale(train_x), scale(val_x), train_y, val_y, 10)


def load_task(config: EnvConfig) -> TaskData:
    """The data of ``config.task`` (``config.dataset``; CPU tensors; move them with :meth:`TaskData.to`)."""
    if config.dataset == "digits":
        return load_digits()
    if config.dataset == "synthetic":
        return make_synthetic(config.synthetic.train_size, config.synthetic.val_size, seed=config.synthetic.seed)
    assert config.data_dir is not None  # EnvConfig guarantees it for cifar10
    return load_cifar10(config.data_dir)
