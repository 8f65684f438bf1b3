"""A fixed architecture to start an episode with: seeds built in from epoch 0 and/or a wider host.

The static baselines of evaluation ask "was growing worth it?": the learned policy's final
network trained from epoch 0 without a lifecycle (:attr:`FixedArchitecture.seeds`), and a plain
host widened to the same parameter count (:attr:`FixedArchitecture.host_widths`). The
environment builds either at ``reset`` (``MorphogeneticEnv.reset(seed, architecture=...)``); the
episode then runs as usual, so the same training loop, validation and accounting apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from esper.simic.env.model import MorphogeneticModel
from esper.tamiyo.contract import AlphaAlgorithm, BlueprintAction


@dataclass(frozen=True, slots=True)
class StaticSeed:
    """A seed that is part of the network from epoch 0: fully blended (alpha 1), trained with the host."""

    blueprint: str
    """Blueprint id (``BlueprintAction.blueprint_id``, e.g. ``"mlp"``)."""
    algorithm: str = "add"
    """How it composes with the host activation: ``add``, ``multiply`` or ``gate`` (a gate has parameters)."""

    def __post_init__(self) -> None:
        try:
            BlueprintAction[self.blueprint.upper()]
            AlphaAlgorithm[self.algorithm.upper()]
        except KeyError:
            raise ValueError(f"unknown blueprint {self.blueprint!r} or blend algorithm {self.algorithm!r}") from None


@dataclass(frozen=True, slots=True)
class FixedArchitecture:
    """What ``reset`` builds instead of the config's bare host (see module docstring)."""

    seeds: Mapping[str, StaticSeed] = field(default_factory=dict)
    """Static seeds by slot id; every other slot starts empty."""
    host_widths: tuple[int, ...] | None = None
    """Block widths of the host (features or channels) instead of its preset's; None keeps the preset."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", MappingProxyType(dict(self.seeds)))
        if self.host_widths is not None:
            object.__setattr__(self, "host_widths", tuple(self.host_widths))
            if any(w < 1 for w in self.host_widths):
                raise ValueError(f"host widths must be >= 1, got {self.host_widths}")

    @classmethod
    def from_final_network(cls, blueprints: Mapping[str, str], algorithms: Mapping[str, str]) -> FixedArchitecture:
        """The seeds an episode ended with (``EpisodeSummary.final_blueprints`` / ``final_algorithms``)."""
        return cls({slot: StaticSeed(bp, algorithms.get(slot, "add")) for slot, bp in blueprints.items()})

    def install_seeds(self, model: MorphogeneticModel, generator: torch.Generator) -> None:
        """Build every static seed into ``model``'s slots (parameters drawn from ``generator``).

        Raises:
            ValueError: a slot the model does not have, or a blueprint its topology does not offer.
        """
        for slot_id, spec in self.seeds.items():
            if slot_id not in model.slots:
                raise ValueError(f"fixed architecture names slot {slot_id!r}; the env has {list(model.slots)}")
            model.slot(slot_id).install_static(
                BlueprintAction[spec.blueprint.upper()], AlphaAlgorithm[spec.algorithm.upper()], generator
            )
