"""Learned embedding of each slot's blueprint, with a trainable row for "no seed here"."""

from __future__ import annotations

import torch
from torch import nn

#: Width of one slot's blueprint embedding (esper-lite's width).
BLUEPRINT_EMBED_DIM = 4
#: Init std of the embedding table: small so the first updates are dominated by the features.
EMBED_INIT_STD = 0.02


class BlueprintEmbedding(nn.Module):
    """``blueprint_indices`` int64 ``[..., S]`` (-1 = empty slot) → float ``[..., S, 4]``.

    Blueprint identity is categorical, so it is embedded rather than one-hot encoded in the
    observation. Row ``num_blueprints`` is the trainable "empty" row; only exactly -1 is remapped
    to it, through a registered buffer so no tensor is allocated per call and the index follows
    ``.to()``. Other out-of-range indices raise from ``nn.Embedding`` (IndexError on CPU); bundles
    validate indices before the network runs.
    """

    def __init__(self, num_blueprints: int, embed_dim: int = BLUEPRINT_EMBED_DIM) -> None:
        super().__init__()
        if num_blueprints < 1 or embed_dim < 1:
            raise ValueError(f"num_blueprints and embed_dim must be >= 1, got {num_blueprints}, {embed_dim}")
        self.num_blueprints = num_blueprints
        self.embed_dim = embed_dim
        self.table = nn.Embedding(num_blueprints + 1, embed_dim)
        nn.init.normal_(self.table.weight, mean=0.0, std=EMBED_INIT_STD)
        self.register_buffer("empty_index", torch.tensor(num_blueprints, dtype=torch.long), persistent=False)

    def forward(self, blueprint_indices: torch.Tensor) -> torch.Tensor:
        indices = torch.where(blueprint_indices == -1, self.empty_index, blueprint_indices.long())
        return self.table(indices)
