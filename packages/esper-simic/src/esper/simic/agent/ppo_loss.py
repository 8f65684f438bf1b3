"""The factored PPO loss as pure functions (TorchRL's ``ClipPPOLoss`` output style).

Tensors and scalars in, a frozen :class:`PPOLoss` out: the weighted ``loss_*`` terms the caller sums
(``PPOLoss.total``) plus detached diagnostics. No module, optimiser or device state.

The policy is factored into heads (op, slot, blueprint, ...), and which heads mattered depends on
the op that actually *executed* (``ActionSpace.relevance_masks(executed_op)``).
Each head gets its own clipped surrogate with the advantage zeroed where the head was irrelevant,
and the per-head losses are summed: a factored trust region in which every head is clipped on its
own ratio. A head that mattered for no step of the batch therefore gets
exactly zero policy gradient.

Normalisation choice: by default each head's surrogate is summed over its relevant steps and
divided by the number of *valid* steps. The sum over heads is then the per-step factored joint
objective, and a head that matters on 2% of the steps gets 2% of the weight instead of being
amplified into full-size steps from a handful of samples. Entropy bonuses, per-head KL and clip
fractions are means over the head's relevant steps, so under that default a rarely relevant head
(slot, blueprint: germinations only) feels its entropy bonus at full weight against a diluted policy
gradient and stays near uniform. ``per_head_normalisation=True`` divides each head's surrogate by
its own relevant-step count instead (the reference's choice), weighing every head's gradient
against its entropy bonus alike; the ``benchmark`` preset uses it (docs/design/benchmark.md).

Shapes: ``[B, T]`` for every per-step tensor (any shape works as long as all agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

#: Log-ratios are clamped to this magnitude before ``exp`` so a wildly off-policy step cannot
#: overflow to inf (exp(20) ~ 5e8 is far outside any clip range anyway).
MAX_LOG_RATIO = 20.0


@dataclass(frozen=True, slots=True)
class PPOLoss:
    """Loss terms (already weighted by their coefficients) and detached diagnostics of one minibatch."""

    loss_policy: torch.Tensor
    """Scalar: sum over heads of the clipped-surrogate losses (each averaged over valid steps)."""
    loss_value: torch.Tensor
    """Scalar: ``value_coef * 0.5 * mean((V - target)^2)`` over valid steps."""
    loss_q: torch.Tensor
    """Scalar: ``q_coef * 0.5 * mean((Q(s, op) - target)^2)`` over valid steps; 0 without a Q head."""
    loss_entropy: torch.Tensor
    """Scalar: ``-sum_h coef_h * mean normalised entropy of head h over its relevant steps``."""
    approx_kl: torch.Tensor
    """Detached scalar: k3 estimator ``(r - 1) - log r`` averaged over every relevant (head, step) pair."""
    clip_fraction: torch.Tensor
    """Detached scalar: share of relevant (head, step) pairs with ``|r - 1| > clip``."""
    max_ratio_deviation: torch.Tensor
    """Detached scalar: ``max |r - 1|`` over relevant (head, step) pairs (exactly 0 on the first minibatch)."""
    head_entropies: Mapping[str, torch.Tensor]
    """Detached scalar per head: mean normalised entropy over the steps where the head mattered."""
    head_approx_kl: Mapping[str, torch.Tensor]
    """Detached scalar per head: k3 KL over the steps where the head mattered (0 if none)."""
    head_clip_fractions: Mapping[str, torch.Tensor]
    """Detached scalar per head: clip fraction over the steps where the head mattered (0 if none)."""

    @property
    def total(self) -> torch.Tensor:
        """The scalar to differentiate: the sum of the ``loss_*`` terms."""
        return self.loss_policy + self.loss_value + self.loss_q + self.loss_entropy


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (bool, same shape) is True; exactly 0 when nothing is selected.

    Uses ``torch.where`` rather than a product so a non-finite value outside the mask cannot leak
    into the result or its gradient.
    """
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1).to(values.dtype)


def clipped_surrogate(
    log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *, clip_coef: float, num_steps: torch.Tensor
) -> torch.Tensor:
    """Clipped-surrogate loss of one head: ``-sum_mask min(r A, clip(r, 1-eps, 1+eps) A) / num_steps``.

    Args:
        log_ratio: ``log pi_new - log pi_old`` ``[B, T]`` (grad flows through it).
        advantages: ``[B, T]`` (normalised) advantages, no grad.
        mask: bool ``[B, T]``: valid steps where the head mattered; elsewhere the term is exactly 0.
        clip_coef: epsilon of the clip range, > 0.
        num_steps: scalar count the sum is divided by (the number of valid steps, so a head's weight
            grows with how often it matters, as in the joint-action objective).
    """
    ratio = log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
    surrogate = torch.where(mask, torch.minimum(unclipped, clipped), torch.zeros_like(unclipped))
    return -surrogate.sum() / num_steps


def squared_error_loss(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``0.5 * mean((prediction - target)^2)`` over valid steps (targets detached)."""
    return 0.5 * masked_mean((prediction - target.detach()).square(), valid)


def explained_variance(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """``1 - Var(target - prediction) / Var(target)`` over valid steps; NaN when the target is constant.

    1 = perfect critic, 0 = no better than predicting the mean, < 0 = worse.
    """
    y, y_hat = target[valid].double(), prediction[valid].double()
    if y.numel() == 0:
        return float("nan")
    var_y = y.var(correction=0)
    if float(var_y) == 0.0:
        return float("nan")
    return float(1.0 - (y - y_hat).var(correction=0) / var_y)


def ppo_loss(
    *,
    new_log_probs: Mapping[str, torch.Tensor],
    old_log_probs: Mapping[str, torch.Tensor],
    entropies: Mapping[str, torch.Tensor],
    advantages: torch.Tensor,
    relevance: Mapping[str, torch.Tensor],
    valid: torch.Tensor,
    values: torch.Tensor,
    value_targets: torch.Tensor,
    q_values: torch.Tensor | None,
    clip_coef: float,
    value_coef: float,
    q_coef: float,
    entropy_coefs: Mapping[str, float],
    per_head_normalisation: bool = False,
) -> PPOLoss:
    """The factored PPO loss of one minibatch.

    Args:
        new_log_probs: float ``[B, T]`` per head from ``evaluate_actions`` (with grad).
        old_log_probs: float ``[B, T]`` per head at the start of the update (no grad).
        entropies: float ``[B, T]`` normalised per-head entropies from ``evaluate_actions``.
        advantages: float ``[B, T]`` advantages (normalised if the caller wants that), no grad.
        relevance: bool ``[B, T]`` per head: did the head matter for the *executed* op
            (``ActionSpace.relevance_masks``). Heads missing from it count as always relevant.
        valid: bool ``[B, T]`` real (non-padding) steps.
        values: float ``[B, T]`` V(s) on the normalised scale (with grad).
        value_targets: float ``[B, T]`` normalised returns.
        q_values: float ``[B, T]`` auxiliary Q(s, op taken) or None.
        clip_coef: PPO clip epsilon, > 0.
        value_coef, q_coef: weights of the value and Q losses, >= 0.
        entropy_coefs: weight per head of the entropy bonus (missing heads: 0).
        per_head_normalisation: divide each head's surrogate by its own relevant-step count instead of
            the valid-step count, so a head that matters on few steps is weighed against its entropy
            bonus (a mean over the same steps) as the op head is.

    Returns:
        :class:`PPOLoss`; ``total`` is what to backpropagate.
    """
    if clip_coef <= 0.0:
        raise ValueError(f"clip_coef must be > 0, got {clip_coef}")
    zero = values.new_zeros(())
    num_valid = valid.sum().clamp_min(1).to(values.dtype)
    loss_policy, loss_entropy = zero, zero
    head_entropies: dict[str, torch.Tensor] = {}
    head_kl: dict[str, torch.Tensor] = {}
    head_clip: dict[str, torch.Tensor] = {}
    kl_sum, clipped_sum, pair_count, max_deviation = zero, zero, zero, zero
    for head, new_lp in new_log_probs.items():
        mask = valid & relevance[head] if head in relevance else valid
        log_ratio = new_lp - old_log_probs[head].detach()
        head_advantages = torch.where(mask, advantages.detach(), torch.zeros_like(advantages))
        num_steps = mask.sum().clamp_min(1).to(values.dtype) if per_head_normalisation else num_valid
        loss_policy = loss_policy + clipped_surrogate(
            log_ratio, head_advantages, mask, clip_coef=clip_coef, num_steps=num_steps
        )
        head_entropies[head] = masked_mean(entropies[head], mask)
        loss_entropy = loss_entropy - entropy_coefs.get(head, 0.0) * head_entropies[head]
        with torch.no_grad():
            clamped = log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
            deviation = (clamped.exp() - 1.0).abs()
            k3 = (clamped.exp() - 1.0) - clamped
            is_clipped = (deviation > clip_coef).to(values.dtype)
            head_kl[head] = masked_mean(k3, mask)
            head_clip[head] = masked_mean(is_clipped, mask)
            kl_sum = kl_sum + torch.where(mask, k3, torch.zeros_like(k3)).sum()
            clipped_sum = clipped_sum + torch.where(mask, is_clipped, torch.zeros_like(is_clipped)).sum()
            pair_count = pair_count + mask.sum()
            max_deviation = torch.maximum(max_deviation, torch.where(mask, deviation, 0.0).max())
    loss_value = value_coef * squared_error_loss(values, value_targets, valid)
    loss_q = zero if q_values is None else q_coef * squared_error_loss(q_values, value_targets, valid)
    pairs = pair_count.clamp_min(1).to(values.dtype)
    return PPOLoss(
        loss_policy=loss_policy,
        loss_value=loss_value,
        loss_q=loss_q,
        loss_entropy=loss_entropy,
        approx_kl=kl_sum / pairs,
        clip_fraction=clipped_sum / pairs,
        max_ratio_deviation=max_deviation,
        head_entropies={h: e.detach() for h, e in head_entropies.items()},
        head_approx_kl=head_kl,
        head_clip_fractions=head_clip,
    )
