"""Walk a freshly germinated seed into BLENDING with non-zero weights (imported by env tests, not collected)."""

from __future__ import annotations

import torch

from esper.simic.env.slot import GradientStats, SeedSlot


def nudge_into_blending(slot: SeedSlot, nudge: float) -> None:
    """Add ``nudge`` to every weight of ``slot``'s GERMINATED seed (so it no longer outputs zero), then
    tick it through TRAINING (one healthy gradient record) into BLENDING."""
    assert slot.seed is not None
    with torch.no_grad():
        for p in slot.seed.parameters():
            p.add_(nudge)
    slot.tick(auto_advance=True)
    slot.record_gradients(GradientStats(1.0, True, 0.0, 0.0))
    slot.tick(auto_advance=True)
