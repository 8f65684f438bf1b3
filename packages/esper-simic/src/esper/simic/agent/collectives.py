"""``Collectives``: the cross-replica reductions data-parallel PPO needs, as an injected seam.

The agent and the normalisers call these at the few points where one replica's numbers must
become every replica's numbers (gradients, the approx-KL early stop, advantage and normaliser
statistics). They never know whether a process group exists: :data:`LOCAL` (one process) does
nothing, so a single-process run executes exactly the arithmetic it always did, and
``esper.simic.training.distributed`` provides the ``torch.distributed`` implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch


class Collectives(Protocol):
    """Reductions over every replica of a data-parallel run (results identical on every replica)."""

    @property
    def world_size(self) -> int:
        """Number of replicas; 1 means every method is the identity."""
        ...

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace each tensor in place by its mean over replicas (gradients)."""
        ...

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every replica's ``tensor`` (same shape everywhere), in rank order."""
        ...


class LocalCollectives:
    """One replica: nothing to reduce."""

    @property
    def world_size(self) -> int:
        return 1

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        del tensors

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor]


LOCAL: Collectives = LocalCollectives()
"""The single-process implementation (the default everywhere)."""


def mean_over_replicas(values: torch.Tensor, reduce: Collectives) -> torch.Tensor:
    """Mean of a small tensor over replicas, summed in rank order so every replica gets the same bits."""
    if reduce.world_size == 1:
        return values
    return torch.stack(reduce.gather(values)).sum(dim=0) / reduce.world_size
