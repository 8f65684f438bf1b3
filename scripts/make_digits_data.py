"""Regenerate ``esper/simic/env/data/digits.npz``, the `digits` task shipped inside the esper-simic wheel.

Run once at development time, in a throwaway environment that has scikit-learn (which bundles the
UCI "Optical Recognition of Handwritten Digits" test set, 1,797 8x8 images, CC BY 4.0)::

    python3 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn numpy
    /tmp/skl/bin/python scripts/make_digits_data.py

scikit-learn is deliberately not a dependency of Esper: the runtime only reads the array file.
The split is fixed (a permutation from a fixed seed, stratified per class so both halves keep the
class balance), so every install trains and validates on exactly the same 1,200 / 597 images.
Pixels stay as the original 0..16 grey levels in uint8; ``esper.simic.env.datasets`` scales them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Seed of the split permutation. Changing it changes every published digits number: don't.
SPLIT_SEED = 20240611
NUM_TRAIN = 1200
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "packages/esper-simic/src/esper/simic/env/data/digits.npz"


def stratified_split(labels: np.ndarray, num_train: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)``: each class contributes to train in proportion to its size."""
    fraction = num_train / len(labels)
    train: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        train.append(members[: round(fraction * len(members))])
    train_idx = np.concatenate(train)
    # Rounding per class can miss the exact total by a few; fix it with a seeded top-up / trim.
    rest = rng.permutation(np.setdiff1d(np.arange(len(labels)), train_idx))
    if len(train_idx) < num_train:
        train_idx = np.concatenate([train_idx, rest[: num_train - len(train_idx)]])
    train_idx = rng.permutation(train_idx)[:num_train]
    val_idx = np.setdiff1d(np.arange(len(labels)), train_idx)
    return np.sort(train_idx), val_idx


def main() -> None:
    from sklearn.datasets import load_digits  # development-time only

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    if images.shape != (1797, 8, 8) or images.min() < 0 or images.max() > 16:
        raise SystemExit(f"unexpected digits data: shape {images.shape}, range [{images.min()}, {images.max()}]")
    pixels = images.astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.uint8)
    train_idx, val_idx = stratified_split(labels, NUM_TRAIN, np.random.default_rng(SPLIT_SEED))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        train_x=pixels[train_idx],
        train_y=labels[train_idx],
        val_x=pixels[val_idx],
        val_y=labels[val_idx],
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): train {len(train_idx)}, val {len(val_idx)}")


if __name__ == "__main__":
    main()
