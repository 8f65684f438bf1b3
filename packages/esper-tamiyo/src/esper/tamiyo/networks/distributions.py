"""Masked categorical maths for one action head, in FP32, shared by the rollout and update legs.

``get_action`` (rollout) and ``evaluate_actions`` (update) both score actions with these
functions and nothing else, in FP32 even under autocast, so the first PPO ratio of an update is
exactly 1 (separate code paths let the two legs drift apart). They are pure: tensors and floats
in, tensors out; no module state, no hidden RNG (sampling takes an explicit ``torch.Generator``),
no host sync, no graph break.
``torch.distributions.Categorical`` is deliberately not used: it validates and syncs on
construction and costs several times more per head than multinomial plus ``log_softmax``.

Shapes: any leading dims ``[...]`` (``[B]`` on the rollout leg, ``[B, T]`` on the update leg)
followed by the head's action dim ``n``. Masks are bool ``[..., n]``, True = valid.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from esper.tamiyo.contract import EmptyMaskError

#: Logit given to invalid actions. Finite (unlike -inf or finfo.min) so half precision cannot
#: overflow, and low enough that ``exp`` of it underflows to exactly 0 in FP32.
MASKED_LOGIT = -1e4
#: Probabilities are clamped to this before the log when a floor is applied.
MIN_PROBABILITY = 1e-8
#: The effective floor never exceeds this share of the mass divided by the number of valid actions,
#: so a head with many valid actions keeps a proper distribution.
MAX_FLOOR_MASS = 0.99


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``logits [..., n]`` in FP32 with invalid actions set to ``MASKED_LOGIT``."""
    return torch.where(mask, logits.float(), MASKED_LOGIT)


def apply_probability_floor(log_probs: torch.Tensor, mask: torch.Tensor, floor: float) -> torch.Tensor:
    """Raise every valid action's probability to at least ``floor``; returns FP32 log-probs ``[..., n]``.

    The effective floor is ``min(floor, 0.99 / num_valid)``. Valid actions below it are set to it,
    the valid actions at or above it are scaled so the total mass stays 1, then probabilities are
    clamped at 1e-8, logged and invalid actions put back at ``MASKED_LOGIT``. Known quirk (kept on
    purpose, as in the reference): an action just above the floor can end a hair below it after
    rescaling.

    Args:
        log_probs: normalised FP32 log-probs ``[..., n]`` (invalid actions at ~``MASKED_LOGIT``).
        mask: bool ``[..., n]``.
        floor: minimum probability in [0, 1).
    """
    probs = log_probs.exp()
    num_valid = mask.sum(dim=-1, keepdim=True).clamp_min(1).to(probs.dtype)
    effective = torch.clamp(MAX_FLOOR_MASS / num_valid, max=floor)
    below = mask & (probs < effective)
    above = mask & ~below
    mass_below = (below.to(probs.dtype) * effective).sum(dim=-1, keepdim=True)
    mass_above = torch.where(above, probs, 0.0).sum(dim=-1, keepdim=True)
    scale = (1.0 - mass_below) / mass_above.clamp_min(MIN_PROBABILITY)
    floored = torch.where(below, effective.expand_as(probs), probs * scale)
    return torch.where(mask, floored.clamp_min(MIN_PROBABILITY).log(), MASKED_LOGIT)


def head_log_probs(logits: torch.Tensor, mask: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Normalised FP32 log-probs ``[..., n]`` of one head under ``mask``, with an optional floor.

    With a single valid action its log-prob is exactly 0 (the masked terms underflow to 0 in the
    log-sum-exp), floored or not. ``floor`` is a Python float so a compiled graph specialises on it.
    """
    log_probs = torch.log_softmax(masked_logits(logits, mask), dim=-1)
    if floor > 0.0:
        log_probs = torch.log_softmax(apply_probability_floor(log_probs, mask, floor), dim=-1)
    return log_probs


def log_prob_of(log_probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-prob ``[...]`` of ``actions`` (int ``[...]``) under ``log_probs [..., n]``."""
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def normalised_entropy(log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy ``[...]`` over the valid actions divided by ``ln(num_valid)``, in [0, 1].

    Exactly 0 when one action is valid (no choice, no exploration signal), exactly 1 for a uniform
    distribution over k >= 2 valid actions up to rounding (clamped into [0, 1]).

    Invalid actions are zeroed *before* the ``exp`` (their ``p * log p`` is then ``1 * 0``): ``exp``
    of a masked log-prob (~``MASKED_LOGIT``) takes a slow path on CPU, ~20x the cost of an ordinary
    one, and padded heads have many such cells. Valid cells compute exactly as before.
    """
    valid = torch.where(mask, log_probs, 0.0)
    entropy = -(valid.exp() * valid).sum(dim=-1)
    num_valid = mask.sum(dim=-1)
    max_entropy = num_valid.clamp_min(2).to(entropy.dtype).log()
    normalised = (entropy / max_entropy).clamp(0.0, 1.0)
    return torch.where(num_valid > 1, normalised, 0.0)


def sample_actions(log_probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw int64 ``[B]`` actions from ``log_probs [B, n]`` (invalid actions have probability 0).

    ``generator`` must live on ``log_probs``' device; ``None`` uses torch's global RNG.
    """
    return torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)


def race_noise(
    shape: torch.Size | tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Uniform [0, 1) FP32 draws of ``shape`` on ``like``'s device: the randomness of :func:`race_actions`.

    ``torch.rand`` and a ``log`` in :func:`race_actions` rather than ``exponential_``, which draws
    each value in double precision one at a time (about 5x slower on CPU for a ``[16, 8, 13]`` batch).
    """
    return torch.rand(shape, device=like.device, generator=generator)


def race_actions(log_probs: torch.Tensor, mask: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Draw int64 ``[...]`` actions from ``log_probs [..., n]`` by an exponential race over the valid actions.

    With ``E = -log(uniform)`` i.i.d. Exp(1), ``argmax(p / E)`` is an exact categorical draw
    (action i wins with probability ``p_i / sum p``); it is how ``torch.multinomial`` draws one
    sample, without the input checks that cost it a dozen ops and two host syncs per call, and it
    takes any leading dims, so one call draws every head of a padded batch. Computed as
    ``argmin(p / log(uniform))``: valid actions score <= 0 (``-0.0`` when ``uniform`` is 0), invalid
    ones 1, so a masked action is never drawn whatever the noise. Invalid log-probs are zeroed
    before the ``exp`` (``exp`` of ~``MASKED_LOGIT`` takes a slow path on CPU).
    """
    probs = torch.where(mask, log_probs, 0.0).exp()
    return torch.where(mask, probs / uniform.log(), 1.0).argmin(dim=-1)


def greedy_actions(log_probs: torch.Tensor) -> torch.Tensor:
    """Most likely int64 action ``[...]`` of ``log_probs [..., n]`` (deterministic mode)."""
    return log_probs.argmax(dim=-1)


def check_nonempty(masks: Mapping[str, torch.Tensor]) -> None:
    """Raise ``EmptyMaskError`` naming the head if any row of any mask ``[..., n]`` is all False.

    One host sync for all heads together. Bundles call it outside their compiled submodules, so it
    needs no ``torch.compiler.disable`` (whose import of Dynamo would add seconds to every start).
    A row without a valid action is a bug upstream and is never replaced by a uniform distribution,
    which would hide it.
    """
    rows_ok = torch.stack([mask.any(dim=-1).all() for mask in masks.values()])
    if bool(rows_ok.all()):
        return
    bad = [head for head, ok in zip(masks, rows_ok.tolist(), strict=True) if not ok]
    raise EmptyMaskError(f"action mask for head(s) {bad} has a row with no valid action")
