"""Training-time image augmentation: random crop with padding and horizontal flip, per sample, on the data's device.

This is the field's standard CIFAR-10 augmentation (pad 4, random 32×32 crop, random left-right
flip). It runs on a whole minibatch at once with index arithmetic, on whatever device the images
are on: only the per-sample offsets and flip flags are drawn (on the generator's device, CPU for the
episode generator) and moved, never the image data. Validation never calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class CropFlip:
    """Random crop after padding by ``padding`` pixels of value ``fill``, then a left-right flip (probability 1/2)."""

    padding: int
    """Pixels added on each side before cropping back to the original size (0: flip only)."""
    fill: tuple[float, ...]
    """Padding value per channel, in the stored (normalised) scale: a black pixel is ``−mean / std``."""

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augmented copy of ``images`` float32 ``[B, C, H, W]`` (``C = len(fill)``); ``images`` is not changed.

        Draws ``[B, 2]`` crop offsets in ``[0, 2·padding]`` and then ``[B]`` flip flags from
        ``generator``, so the same generator state gives the same batch on every device.
        """
        batch, channels, height, width = images.shape
        if channels != len(self.fill):
            raise ValueError(f"images have {channels} channels, the fill has {len(self.fill)}")
        p, device = self.padding, images.device
        offsets = torch.randint(0, 2 * p + 1, (batch, 2), generator=generator, device=generator.device)
        flips = torch.randint(0, 2, (batch,), generator=generator, device=generator.device).bool()
        offsets, flips = offsets.to(device), flips.to(device)
        fill = torch.tensor(self.fill, dtype=images.dtype, device=device).view(1, channels, 1, 1)
        padded = fill.expand(batch, channels, height + 2 * p, width + 2 * p).clone()
        padded[:, :, p : p + height, p : p + width] = images
        rows = offsets[:, :1] + torch.arange(height, device=device)  # [B, H]
        cols_ahead = torch.arange(width, device=device)
        cols = offsets[:, 1:] + torch.where(flips[:, None], width - 1 - cols_ahead, cols_ahead)  # [B, W]
        samples = torch.arange(batch, device=device)[:, None, None]
        # Advanced indices on dims 0, 2, 3 around a slice: the result is [B, H, W, C].
        return padded[samples, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
