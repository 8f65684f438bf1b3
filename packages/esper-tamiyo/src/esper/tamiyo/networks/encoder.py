"""Observation encoder shared by every trunk: features ++ blueprint embeddings → Linear → LN → ReLU."""

from __future__ import annotations

import torch
from torch import nn

from esper.tamiyo.networks.embedding import BLUEPRINT_EMBED_DIM, BlueprintEmbedding
from esper.tamiyo.networks.heads import init_linear


class ObservationEncoder(nn.Module):
    """``features [..., F]`` and ``blueprint_indices [..., S]`` → ``[..., hidden_size]``.

    The per-slot blueprint embeddings are flattened (``S * 4`` values) and appended to the
    feature vector before the first Linear, which LayerNorm then rescales so symlog features and
    embeddings share one scale.
    """

    def __init__(self, feature_dim: int, num_slots: int, hidden_size: int, num_blueprints: int) -> None:
        super().__init__()
        if feature_dim < 1 or num_slots < 1 or hidden_size < 1:
            raise ValueError(
                f"feature_dim, num_slots and hidden_size must be >= 1, got {feature_dim}, {num_slots}, {hidden_size}"
            )
        self.feature_dim = feature_dim
        self.num_slots = num_slots
        self.embedding = BlueprintEmbedding(num_blueprints)
        self.net = nn.Sequential(
            init_linear(nn.Linear(feature_dim + num_slots * BLUEPRINT_EMBED_DIM, hidden_size)),
            nn.LayerNorm(hidden_size),
            nn.ReLU(),
        )

    def forward(self, features: torch.Tensor, blueprint_indices: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(blueprint_indices).flatten(start_dim=-2).to(features.dtype)
        return self.net(torch.cat([features, embedded], dim=-1))
