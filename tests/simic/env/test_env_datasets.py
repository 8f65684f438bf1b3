"""Tasks: the bundled digits split, synthetic determinism, CIFAR-10 pickle batches and their errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from esper.simic.env import EnvConfig, SyntheticTask
from esper.simic.env.datasets import DataError, load_cifar10, load_digits, load_task, make_synthetic


def test_digits_fixed_split() -> None:
    data = load_digits()
    assert data.train_x.shape == (1200, 1, 8, 8) and data.val_x.shape == (597, 1, 8, 8)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert data.num_classes == 10 and data.input_shape == (1, 8, 8)
    assert torch.bincount(data.train_y).min() >= 110 and torch.bincount(data.val_y).min() >= 55  # stratified
    assert abs(float(data.train_x.mean())) < 1e-4 and abs(float(data.train_x.std()) - 1.0) < 1e-2
    again = load_digits()
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.val_y, data.val_y)


def test_synthetic_is_seeded() -> None:
    a = make_synthetic(40, 10, seed=5)
    b = make_synthetic(40, 10, seed=5)
    c = make_synthetic(40, 10, seed=6)
    assert a.train_x.shape == (40, 1, 8, 8) and a.val_y.shape == (10,)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.train_x, c.train_x)
    task = load_task(EnvConfig(task="synthetic", synthetic=SyntheticTask(train_size=30, val_size=7, seed=5)))
    assert task.train_x.shape[0] == 30 and task.val_x.shape[0] == 7


def _write_batch(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
    with path.open("wb") as f:
        pickle.dump(batch, f)


def _fake_cifar(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        _write_batch(root / f"data_batch_{i}", 4, i)
    _write_batch(root / "test_batch", 3, 9)
    return root


def test_cifar10_reads_pickle_batches(tmp_path: Path) -> None:
    data = load_cifar10(_fake_cifar(tmp_path / "cifar-10-batches-py").parent)  # nested layout
    assert data.train_x.shape == (20, 3, 32, 32) and data.val_x.shape == (3, 3, 32, 32)
    assert data.train_y.shape == (20,) and data.num_classes == 10
    flat = _fake_cifar(tmp_path / "flat")
    with (flat / "data_batch_1").open("rb") as f:
        raw = pickle.load(f)
    first = torch.from_numpy(raw[b"data"][0].reshape(3, 32, 32).astype(np.float32) / 255.0)
    expected = (first - torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)) / torch.tensor(
        [0.2470, 0.2435, 0.2616]
    ).view(3, 1, 1)
    assert torch.allclose(load_cifar10(flat).train_x[0], expected, atol=1e-5)


def test_cifar10_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    root = _fake_cifar(tmp_path / "broken")
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(root)
    _write_batch(root / "data_batch_3", 4, 3)
    (root / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(root)
    with (root / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 10), dtype=np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="3072"):
        load_cifar10(root)
    with pytest.raises(DataError):
        load_task(EnvConfig(task="cifar10", data_dir=str(tmp_path / "nowhere")))


class _OpensAFile:
    """A pickle payload: unpickling it calls ``open(marker, "w")`` (a harmless stand-in for ``os.system``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_refuses_a_batch_that_calls_a_global(tmp_path: Path, protocol: int) -> None:
    root = _fake_cifar(tmp_path / "cifar")
    marker = tmp_path / "MARKER"
    batch = {b"data": _OpensAFile(marker), b"labels": [0]}
    (root / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(DataError) as info:
        load_cifar10(root)
    message = str(info.value)
    assert "\n" not in message and "data_batch_2" in message
    assert f"refused global {open.__module__}.open" in message
    assert not marker.exists()  # the payload never ran


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_cifar10_reads_genuine_batches_in_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    """The real files' layout (uint8 ndarray data, int labels, a bytes label and file names), numpy-scalar
    labels as the helpers above write them, and numpy 1.x's module name ``numpy.core.multiarray``."""
    root = tmp_path / "cifar"
    root.mkdir()
    rng = np.random.default_rng(protocol)
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        labels = rng.integers(0, 10, 2)
        batch = {
            b"batch_label": b"training batch 1 of 5",
            b"labels": list(labels) if i % 2 else labels.tolist(),
            b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
            b"filenames": [b"a.png", b""],
        }
        raw = pickle.dumps(batch, protocol=protocol)
        if protocol <= 2:  # text GLOBAL opcodes: name the module as numpy 1.x (and Python 2) pickles do
            raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        (root / name).write_bytes(raw)
    data = load_cifar10(root)
    assert data.train_x.shape == (10, 3, 32, 32) and data.val_y.shape == (2,)
