"""Tiny hosts of every topology, for the model-level tests (imported by tests, not collected)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from esper.simic.env.hosts import HostPreset, build_host
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.slot import SlotSettings

#: A few features or channels per block: every blueprint and style runs in milliseconds.
HOSTS = {
    "mlp": HostPreset((6, 5, 4)),
    "cnn": HostPreset((4, 8, 4), kernel_size=3),
    "transformer": HostPreset((8, 8, 8), embed_dim=8, num_heads=2),
}
#: The transformer reads 6 byte tokens of a 256-token vocabulary; the image hosts 8x8 images of 10 classes.
TOKENS, VOCAB = 6, 256


def tiny_model(
    topology: str,
    slot_ids: Sequence[str] = ("r0c0", "r0c1", "r0c2"),
    *,
    preset: HostPreset | None = None,
    seed: int = 0,
) -> MorphogeneticModel:
    """A model on the tiny ``topology`` host (or ``preset``), seeds skipping the TRAINING dwell."""
    text = topology == "transformer"
    host = build_host(
        topology,
        impaired=False,
        input_shape=(TOKENS,) if text else (1, 8, 8),
        num_classes=VOCAB if text else 10,
        generator=torch.Generator().manual_seed(seed),
        preset=preset or HOSTS[topology],
    )
    return MorphogeneticModel(host, tuple(slot_ids), SlotSettings(training_dwell=0))
