"""Generalised advantage estimation and advantage normalisation, as pure functions.

Both take tensors and scalars only (no buffer, no module, no device or RNG of their own), so the
rollout buffer and the PPO update call them and never re-implement them. Shapes follow the rollout
buffer: ``[N, T]`` = environments x time steps, one row per environment.

Episode ends come in two kinds and are never mixed up:

* ``terminated``: a true terminal (a governor rollback). Nothing follows it, so V(s_{t+1}) = 0
  and the trace is cut.
* ``truncated``: the episode was cut by its time limit (or the rollout stopped). The state after
  it still had a future, so the step bootstraps from V(s_{t+1}), given separately in
  ``bootstrap_values`` because s_{t+1} is not in the row. The trace is cut too.

``valid`` marks the steps that really happened; padding (after an environment finished its
episode) gets advantage 0 and return 0 and never reaches the loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class GAEResult(NamedTuple):
    """Output of :func:`generalized_advantage_estimate` (unpacks as ``advantages, returns``)."""

    advantages: torch.Tensor
    """``[N, T]`` GAE(gamma, lambda) advantages; 0 at invalid steps."""
    returns: torch.Tensor
    """``[N, T]`` value targets ``advantages + values`` (same scale as ``rewards``); 0 at invalid steps."""


def _check_inputs(
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    valid: torch.Tensor,
    gamma: float,
    lam: float,
) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [N, T], got shape {list(rewards.shape)}")
    named = {
        "values": values,
        "bootstrap_values": bootstrap_values,
        "terminated": terminated,
        "truncated": truncated,
        "valid": valid,
    }
    for name, tensor in named.items():
        if tensor.shape != rewards.shape:
            raise ValueError(f"{name} has shape {list(tensor.shape)}, expected {list(rewards.shape)} like rewards")
    for name in ("terminated", "truncated", "valid"):
        if named[name].dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor, got {named[name].dtype}")
    for name, tensor in (("rewards", rewards), ("values", values), ("bootstrap_values", bootstrap_values)):
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")


def generalized_advantage_estimate(
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    valid: torch.Tensor,
    *,
    gamma: float,
    lam: float,
) -> GAEResult:
    """GAE(gamma, lambda) over ``[N, T]`` rollouts, vectorised over environments.

    For each step ``t`` (Schulman et al. 2016, eq. 16)::

        next_value_t = 0                    if terminated[t]
                     = bootstrap_values[t]  elif truncated[t]
                     = values[t + 1]        otherwise
        delta_t = rewards[t] + gamma * next_value_t - values[t]
        A_t     = delta_t + gamma * lam * A_{t+1} * continues_t

    where ``continues_t`` is False when step ``t`` ends an episode (terminated or truncated) or is
    invalid. A row may hold several episodes back to back, with padding anywhere between them
    (padding always gets 0, even when a later episode follows it). A step flagged both terminated
    and truncated counts as terminated (gymnasium's rule: no bootstrap).

    Args:
        rewards: float ``[N, T]`` rewards (whatever scale the caller trains on).
        values: float ``[N, T]`` V(s_t) on the same scale as ``rewards`` (denormalise first).
        bootstrap_values: float ``[N, T]`` V(s_{t+1}) for steps that end by truncation; read only
            where ``truncated``.
        terminated: bool ``[N, T]`` true terminals.
        truncated: bool ``[N, T]`` time-limit (or rollout-cut) ends.
        valid: bool ``[N, T]`` steps that happened.
        gamma: discount in [0, 1].
        lam: GAE lambda in [0, 1] (1 = Monte-Carlo returns, 0 = one-step TD).

    Returns:
        :class:`GAEResult` of two float ``[N, T]`` tensors, zero at invalid steps.

    Raises:
        ValueError: shapes differ (nothing is broadcast), gamma/lam outside [0, 1], or a valid step
            ends its row (or is followed by padding) without being terminated or truncated: such a
            step has no defined successor value.
        TypeError: flags are not bool or values are not floating point.
    """
    _check_inputs(rewards, values, bootstrap_values, terminated, truncated, valid, gamma, lam)
    num_steps = rewards.shape[1]
    next_valid = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)
    episode_end = terminated | truncated
    dangling = valid & ~episode_end & ~next_valid
    if bool(dangling.any()):
        env, step = (int(i) for i in dangling.nonzero()[0])
        raise ValueError(
            f"valid step (env {env}, t {step}) is followed by padding or the end of the row but is neither "
            "terminated nor truncated; mark a cut rollout as truncated and give its bootstrap value"
        )
    zeros = torch.zeros_like(values)
    next_values = torch.cat([values[:, 1:], zeros[:, :1]], dim=1)
    next_values = torch.where(truncated, bootstrap_values, next_values)
    next_values = torch.where(terminated, zeros, next_values)
    deltas = torch.where(valid, rewards + gamma * next_values - values, zeros)
    decay = torch.where(episode_end | ~valid, zeros, torch.full_like(values, gamma * lam))

    advantages = torch.empty_like(values)
    running = zeros[:, 0]
    for t in range(num_steps - 1, -1, -1):
        running = deltas[:, t] + decay[:, t] * running
        advantages[:, t] = running
    returns = torch.where(valid, advantages + values, zeros)
    return GAEResult(advantages=advantages, returns=returns)


class AdvantageStats(NamedTuple):
    """Normalised advantages plus the statistics they were normalised with (for metrics)."""

    advantages: torch.Tensor
    """``[N, T]`` normalised advantages; 0 at invalid steps."""
    mean: torch.Tensor
    """Scalar mean of the raw advantages over valid steps."""
    std: torch.Tensor
    """Scalar population std of the raw advantages over valid steps (before the floor)."""


def normalize_advantages(
    advantages: torch.Tensor,
    valid: torch.Tensor,
    *,
    std_floor: float,
    moments: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> AdvantageStats:
    """Global advantage normalisation over every valid step of every environment.

    ``(A - mean) / max(std, std_floor)`` with the population std (correction 0). The floor keeps a
    batch of near-identical advantages (e.g. one where every action led to the same outcome) from
    being blown up into unit-variance noise (the reference system uses 0.1 on reward-normalised scales).

    Args:
        advantages: float ``[...]``.
        valid: bool mask shaped like ``advantages``; must select at least one step.
        std_floor: > 0, on the advantages' scale.
        moments: (mean, std) to use instead of the valid steps' own (data-parallel PPO passes those
            of every replica's advantages); None: computed here.

    Raises:
        ValueError: shapes differ, no valid step, or ``std_floor <= 0``.
    """
    if advantages.shape != valid.shape:
        raise ValueError(f"valid has shape {list(valid.shape)}, expected {list(advantages.shape)}")
    if std_floor <= 0.0:
        raise ValueError(f"std_floor must be > 0, got {std_floor}")
    selected = advantages[valid]
    if selected.numel() == 0:
        raise ValueError("normalize_advantages needs at least one valid step")
    mean, std = (selected.mean(), selected.std(correction=0)) if moments is None else moments
    normalised = (advantages - mean) / std.clamp_min(std_floor)
    return AdvantageStats(torch.where(valid, normalised, torch.zeros_like(normalised)), mean, std)
