"""Tasks the host trains on, held as in-memory tensors (no DataLoader, nothing downloaded).

- ``digits``: the UCI "Optical Recognition of Handwritten Digits" set (1,797 8x8 grey images,
  10 classes, CC BY 4.0) as bundled in scikit-learn, shipped inside this package as
  ``data/digits.npz`` with a fixed 1,200/597 train/validation split (regenerate it with
  ``scripts/make_digits_data.py``).
- ``synthetic``: a seeded generator of any size (class prototypes plus noise), for tests.
- ``cifar10``: the standard CIFAR-10 python pickle batches read from a local directory (by an unpickler
  that refuses every global but numpy's array ones, so a crafted file cannot run code), normalised
  with fixed channel constants and, by default, trained with random crop + flip augmentation
  (:class:`~esper.simic.env.config.CifarTask`, ``augment.py``).
- ``text``: next-byte prediction on a plain-text corpus (a file, or a folder of ``.txt`` files
  read in sorted order; TinyStories' text files work as they are), or, without ``data_dir``, on a
  corpus generated at load time by ``grammar.py``. Tokens are bytes (vocabulary 256, see
  :class:`~esper.simic.env.config.TextTask`); the last ``val_fraction`` of the token stream is the
  validation split; both splits are cut into non-overlapping windows of ``context_length`` tokens.

Images are float32 ``[N, C, H, W]``, standardised with statistics of the training split;
labels are int64 ``[N]``. Text windows are int64 token ids ``[N, T]`` with targets ``[N, T]``, the
same stream shifted by one token (``y[i, t] = x[i, t + 1]``). Every task is fixed by its config,
so all episodes and all environments see the same data; only the minibatch order (and, for text,
which windows an epoch trains on) depends on the episode seed.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import numpy as np
import torch

from esper.simic.env.augment import CropFlip
from esper.simic.env.config import CifarTask, EnvConfig, TextTask
from esper.simic.env.grammar import generate_corpus

#: Per-channel mean of the 50,000 CIFAR-10 training images, pixels scaled to [0, 1] (R, G, B). Fixed
#: constants, not recomputed from the files read, so a subset or a test's generated batches are
#: normalised exactly as the full training set is (the values the field's CIFAR-10 recipes use).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
#: Per-channel standard deviation of the same pixels (R, G, B).
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"


class DataError(ValueError):
    """A dataset is missing or malformed (message names the path and what is wrong)."""


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` in protocols 0-2, for latin-1 only."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode of {type(text).__name__} to {encoding!r}")
    return text.encode("latin1")


def _reconstructor(obj: object, protocol: int) -> Callable[..., Any]:
    """The callable that ``pickle`` records to rebuild ``obj`` in ``protocol``."""
    reduced = obj.__reduce_ex__(protocol)
    assert isinstance(reduced, tuple) and callable(reduced[0])
    return reduced[0]


def _numpy_globals() -> Mapping[tuple[str, str], Callable[..., Any]]:
    """The numpy callables an ndarray or numpy scalar pickles through, under numpy 1.x's and 2.x's module names.

    Taken from numpy's own reductions, so no module is imported by a name a file gives.
    """
    reconstruct = _reconstructor(np.zeros(1, np.uint8), 2)  # protocols 0-4
    frombuffer = _reconstructor(np.zeros(1, np.uint8), 5)
    scalar = _reconstructor(np.uint8(0), 2)  # a numpy integer in a label list
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[f"{core}.multiarray", "_reconstruct"] = reconstruct
        allowed[f"{core}.multiarray", "scalar"] = scalar
        allowed[f"{core}.numeric", "_frombuffer"] = frombuffer
    return allowed


#: Every global a CIFAR-10 batch may name: numpy arrays and scalars, and ``bytes`` as Python 3 pickles it in
#: protocols 0-2. Dicts, lists, str, bytes and numbers need none; anything else (``os.system``) is refused.
_CIFAR_PICKLE_GLOBALS: Mapping[tuple[str, str], Callable[..., Any]] = MappingProxyType(
    {
        **_numpy_globals(),
        ("_codecs", "encode"): _latin1_bytes,
        ("__builtin__", "bytes"): bytes,
        ("builtins", "bytes"): bytes,
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """Reads what a CIFAR-10 batch holds and refuses every other global, so a crafted file cannot run code."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file, encoding="bytes")  # Python 2 ``str`` (the real files' keys) → bytes

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        found = _CIFAR_PICKLE_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name} (a CIFAR-10 batch holds only dicts, lists, bytes, str, numbers "
                "and numpy arrays; the file is not a CIFAR-10 batch, or was crafted to run code)"
            )
        return found


@dataclass(frozen=True, slots=True)
class TaskData:
    """Train and validation tensors of one task (read-only by convention: shared by envs).

    Images: ``x`` float32 ``[N, C, H, W]``, ``y`` int64 ``[N]``. Text: ``x`` int64 token ids ``[N, T]``,
    ``y`` int64 next tokens ``[N, T]`` (one prediction per position), classes = vocabulary.
    """

    name: str
    """Task name (``digits``, ``synthetic``, ``cifar10``, ``text``)."""
    train_x: torch.Tensor
    """float32 ``[N_train, C, H, W]``, or int64 ``[N_train, T]`` token windows."""
    train_y: torch.Tensor
    """int64 ``[N_train]`` (or ``[N_train, T]``) in ``[0, num_classes)``."""
    val_x: torch.Tensor
    """float32 ``[N_val, C, H, W]``, or int64 ``[N_val, T]``."""
    val_y: torch.Tensor
    """int64 ``[N_val]`` (or ``[N_val, T]``)."""
    num_classes: int
    """Number of classes (the vocabulary size for text)."""
    epoch_samples: int | None = None
    """Training samples per host epoch, the first of each epoch's permutation; None: all of them."""
    augmentation: CropFlip | None = None
    """Applied to every training minibatch (never to validation); None: the task is trained as stored."""

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("val", self.val_x, self.val_y)):
            _check_split(self.name, split, x, y)
        if self.epoch_samples is not None and self.epoch_samples < 1:
            raise DataError(f"{self.name}: epoch_samples must be >= 1 or None, got {self.epoch_samples}")
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
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: ``(C, H, W)`` of an image or ``(T,)`` of a token window."""
        return tuple(int(size) for size in self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> TaskData:
        """Copy on ``device`` (the same object when already there)."""
        if self.train_x.device == torch.device(device):
            return self
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            val_x=self.val_x.to(device),
            val_y=self.val_y.to(device),
        )


def _check_split(name: str, split: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """Images ``x`` float32 ``[N, C, H, W]`` with ``y`` int64 ``[N]``, or tokens ``x`` int64 ``[N, T]`` with ``y``
    alike."""
    if x.dtype == torch.int64 and x.dim() == 2:
        if y.shape != x.shape or y.dtype != torch.int64:
            raise DataError(
                f"{name}: {split}_y must be int64 {tuple(x.shape)} like {split}_x, got {y.dtype} {tuple(y.shape)}"
            )
    elif x.dim() != 4 or x.dtype != torch.float32:
        raise DataError(
            f"{name}: {split}_x must be float32 [N, C, H, W] or int64 [N, T], got {x.dtype} {tuple(x.shape)}"
        )
    elif y.shape != (x.shape[0],) or y.dtype != torch.int64:
        raise DataError(f"{name}: {split}_y must be int64 [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{name}: the {split} split is empty")


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
            batch = _CifarUnpickler(f).load()  # never plain pickle.load: a batch file must not run code
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as err:
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


def load_cifar10(data_dir: str | Path, settings: CifarTask | None = None) -> TaskData:
    """CIFAR-10 from the python pickle batches in ``data_dir`` (or its ``cifar-10-batches-py`` subfolder).

    Returns train ``[n_train, 3, 32, 32]`` from ``data_batch_1..5`` and val from ``test_batch``,
    scaled to [0, 1] and normalised with :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD`; with
    ``settings.augment`` (the default) training minibatches get a random crop (padding with black,
    i.e. ``−mean / std``) and flip. Raises ``DataError`` for a missing directory or file or a malformed batch
    (one that names any global but numpy's array and scalar constructors included: it is never run).
    """
    settings = settings or CifarTask()
    root = _cifar_root(data_dir)
    train = [_read_cifar_batch(root / name) for name in _CIFAR_TRAIN_FILES]
    val_x, val_y = _read_cifar_batch(root / _CIFAR_TEST_FILE)
    mean = np.asarray(CIFAR10_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(1, 3, 1, 1)

    def scale(images: np.ndarray) -> np.ndarray:
        return (images.astype(np.float32) / 255.0 - mean) / std

    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    black = tuple(-m / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD, strict=True))
    augmentation = CropFlip(settings.crop_padding, black) if settings.augment else None
    task = _task("cifar10", scale(train_x), scale(val_x), train_y, val_y, 10)
    return dataclasses.replace(task, augmentation=augmentation)


def write_cifar10_batches(directory: str | Path, *, per_batch: int, num_val: int, seed: int) -> Path:
    """Write random images in the CIFAR-10 python format to ``directory`` (created); returns it.

    ``data_batch_1..5`` hold ``per_batch`` images each and ``test_batch`` ``num_val``: pickled dicts
    with ``b"data"`` uint8 ``[n, 3072]`` (channel-major rows) and ``b"labels"`` (a list of ints in
    [0, 10)), as the real files. For tests and benchmarks that have no CIFAR-10 download.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = {name: per_batch for name in _CIFAR_TRAIN_FILES} | {_CIFAR_TEST_FILE: num_val}
    for name, size in sizes.items():
        batch = {
            b"data": rng.integers(0, 256, size=(size, 3 * 32 * 32), dtype=np.uint8),
            b"labels": rng.integers(0, 10, size=size).tolist(),
        }
        with (root / name).open("wb") as f:
            pickle.dump(batch, f)
    return root


def read_corpus(path: str | Path, *, max_bytes: int = 0) -> bytes:
    """The bytes of a text file, or of every ``*.txt`` file of a folder in sorted name order (joined by newlines).

    At most ``max_bytes`` bytes are read (the beginning; 0: everything). The bytes are returned as
    they are, without decoding: the text task's tokens are bytes, so invalid UTF-8 is not an error.
    Raises ``DataError`` for a missing path, a folder without ``.txt`` files, or no text at all.
    """
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(f for f in root.glob("*.txt") if f.is_file())
        if not files:
            raise DataError(f"text corpus folder {str(root)!r} holds no .txt files")
    elif root.is_file():
        files = [root]
    else:
        raise DataError(f"text corpus {str(root)!r} does not exist (give a text file or a folder of .txt files)")
    parts: list[bytes] = []
    remaining = max_bytes or -1  # bytes still wanted; -1 reads whole files
    for file in files:
        with file.open("rb") as f:
            parts.append(f.read(remaining))
        if max_bytes:
            remaining -= len(parts[-1]) + 1  # + the joining newline
            if remaining <= 0:
                break
    data = b"\n".join(parts)[: max_bytes or None]
    if not data.strip():
        raise DataError(f"text corpus {str(root)!r} is empty")
    return data


def token_windows(tokens: torch.Tensor, context_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows of a token stream ``[n]``: ``x [N, T]`` and the next tokens ``y [N, T]``.

    ``N = (n − 1) // T``; both are views of ``tokens`` (no copy).
    """
    count = (tokens.numel() - 1) // context_length
    end = count * context_length
    return tokens[:end].view(count, context_length), tokens[1 : end + 1].view(count, context_length)


def load_text(settings: TextTask, data_dir: str | None) -> TaskData:
    """The ``text`` task: byte tokens of the corpus at ``data_dir`` (else the generated one), split and windowed.

    Train windows cover the first ``1 − val_fraction`` of the stream (an epoch trains on
    ``train_windows`` of them); ``val_windows`` evenly spaced windows of the rest are the fixed
    validation set. Raises ``DataError`` when either split has no complete window.
    """
    if data_dir is None:
        corpus = generate_corpus(settings.corpus_bytes, settings.corpus_seed)
    else:
        corpus = read_corpus(data_dir, max_bytes=settings.max_bytes)
    tokens = torch.frombuffer(bytearray(corpus), dtype=torch.uint8).to(torch.int64)
    split = tokens.numel() - round(settings.val_fraction * tokens.numel())
    t = settings.context_length
    train_x, train_y = token_windows(tokens[:split], t)
    val_x, val_y = token_windows(tokens[split:], t)
    if train_x.shape[0] == 0 or val_x.shape[0] == 0:
        raise DataError(
            f"text corpus of {tokens.numel()} bytes is too short for windows of {t} tokens in both splits "
            f"(validation share {settings.val_fraction})"
        )
    if settings.val_windows and val_x.shape[0] > settings.val_windows:
        keep = torch.linspace(0, val_x.shape[0] - 1, settings.val_windows).round().long()
        val_x, val_y = val_x[keep], val_y[keep]
    epoch_samples = settings.train_windows if 0 < settings.train_windows < train_x.shape[0] else None
    return TaskData("text", train_x, train_y, val_x, val_y, 256, epoch_samples)


def load_task(config: EnvConfig) -> TaskData:
    """The data of ``config.task`` (``config.dataset``; CPU tensors; move them with :meth:`TaskData.to`)."""
    if config.dataset == "digits":
        return load_digits()
    if config.dataset == "synthetic":
        return make_synthetic(config.synthetic.train_size, config.synthetic.val_size, seed=config.synthetic.seed)
    if config.task == "text":
        return load_text(config.text, config.data_dir)
    assert config.data_dir is not None  # EnvConfig guarantees it for cifar10
    return load_cifar10(config.data_dir, config.cifar10)
