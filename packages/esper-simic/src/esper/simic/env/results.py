"""Frozen results of ``reset`` and ``step`` for the single and the vectorised environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from esper.tamiyo.contract import ActionMasks, Observation


@dataclass(frozen=True, slots=True)
class EnvReset:
    """Start of an episode: observation (features ``[F]``, blueprints ``[S]``), masks (single env) and info."""

    obs: Observation
    masks: ActionMasks
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EnvStep:
    """One step of one environment (raw, unnormalised observation and reward)."""

    obs: Observation
    masks: ActionMasks
    reward: float
    terminated: bool
    """True terminal (governor rollback): do not bootstrap."""
    truncated: bool
    """Time limit reached (last epoch of the episode): bootstrap from ``obs``."""
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VectorReset:
    """Start of N episodes: observation ``[N, F]`` / ``[N, S]``, masks ``[N, ...]`` (with ``slot_by_op [N, O, S]``)."""

    obs: Observation
    masks: ActionMasks
    infos: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class VectorStep:
    """One lockstep step of N environments; finished environments are inactive and repeat their last obs."""

    obs: Observation
    masks: ActionMasks
    rewards: torch.Tensor
    """float32 ``[N]`` (0 for inactive envs)."""
    terminated: torch.Tensor
    """bool ``[N]``."""
    truncated: torch.Tensor
    """bool ``[N]``."""
    executed_op: torch.Tensor
    """int64 ``[N]``: the op actually executed (WAIT for an invalid action or an inactive env)."""
    active: torch.Tensor
    """bool ``[N]``: the env was stepped (its episode had not finished before this call)."""
    infos: tuple[dict[str, Any], ...]
