"""The factored PPO loss: hand values, causal masking (exactly zero gradient), KL/clip diagnostics."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from esper.simic.agent import clipped_surrogate, explained_variance, masked_mean, ppo_loss
from esper.simic.agent.ppo_loss import PPOLoss
from esper.tamiyo.contract import LifecycleOp, morphogenetic_action_space


def _k3(log_ratio: float) -> float:
    return math.exp(log_ratio) - 1.0 - log_ratio


def test_clipped_surrogate_hand_values_and_gradients() -> None:
    ratios = torch.tensor([0.5, 1.0, 1.5, 0.5], dtype=torch.float64)
    advantages = torch.tensor([1.0, -1.0, 2.0, -1.0], dtype=torch.float64)
    log_ratio = ratios.log().requires_grad_(True)
    mask = torch.ones(4, dtype=torch.bool)
    num_steps = torch.tensor(4.0, dtype=torch.float64)
    loss = clipped_surrogate(log_ratio, advantages, mask, clip_coef=0.2, num_steps=num_steps)
    # min(r A, clip(r) A): 0.5 | -1 | min(3, 2.4) = 2.4 | min(-0.5, -0.8) = -0.8  -> sum 1.1
    assert abs(loss.item() - (-1.1 / 4)) < 1e-12
    loss.backward()
    # d/dlogr of -(r A)/4 = -r A / 4 where the unclipped branch is taken; 0 where the clip is active.
    expected = torch.tensor([-0.5 / 4, 1.0 / 4, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(log_ratio.grad, expected, rtol=0, atol=1e-12)


def test_masked_steps_contribute_nothing() -> None:
    log_ratio = torch.tensor([0.3, float("nan")], requires_grad=True)
    loss = clipped_surrogate(
        log_ratio, torch.tensor([1.0, 1.0]), torch.tensor([True, False]), clip_coef=0.2, num_steps=torch.tensor(2.0)
    )
    loss.backward()
    assert math.isfinite(loss.item()) and log_ratio.grad[1] == 0.0
    assert float(masked_mean(torch.tensor([1.0, 5.0]), torch.tensor([False, False]))) == 0.0


def _two_head_inputs():
    valid = torch.tensor([[True, True, False]])
    new = {
        "op": torch.tensor([[0.1, -0.2, 5.0]], dtype=torch.float64),
        "blueprint": torch.tensor([[0.3, 0.4, 5.0]], dtype=torch.float64),
    }
    old = {h: torch.zeros_like(v) for h, v in new.items()}
    relevance = {"op": torch.ones_like(valid), "blueprint": torch.tensor([[True, False, True]])}
    entropies = {
        "op": torch.tensor([[0.5, 0.7, 0.9]], dtype=torch.float64),
        "blueprint": torch.tensor([[0.2, 0.8, 0.9]], dtype=torch.float64),
    }
    return new, old, relevance, entropies, valid


def test_ppo_loss_terms_and_diagnostics_by_hand() -> None:
    new, old, relevance, entropies, valid = _two_head_inputs()
    advantages = torch.tensor([[1.0, -1.0, 100.0]], dtype=torch.float64)
    values = torch.tensor([[1.0, 2.0, 50.0]], dtype=torch.float64)
    targets = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    q_values = torch.tensor([[2.0, 2.0, 50.0]], dtype=torch.float64)
    out = ppo_loss(
        new_log_probs=new,
        old_log_probs=old,
        entropies=entropies,
        advantages=advantages,
        relevance=relevance,
        valid=valid,
        values=values,
        value_targets=targets,
        q_values=q_values,
        clip_coef=0.2,
        value_coef=0.5,
        q_coef=0.25,
        entropy_coefs={"op": 0.1, "blueprint": 0.2},
    )
    r = math.exp
    op_surr = min(r(0.1) * 1.0, 1.2 * 1.0) + min(r(-0.2) * -1.0, 0.8 * -1.0)  # both steps valid
    bp_surr = min(r(0.3) * 1.0, 1.2 * 1.0)  # only step 0 is valid and relevant
    assert abs(float(out.loss_policy) - (-(op_surr + bp_surr) / 2)) < 1e-12  # averaged over the 2 valid steps
    assert abs(float(out.loss_value) - 0.5 * 0.5 * (1.0 + 4.0) / 2) < 1e-12
    assert abs(float(out.loss_q) - 0.25 * 0.5 * (4.0 + 4.0) / 2) < 1e-12
    assert abs(float(out.loss_entropy) - -(0.1 * 0.6 + 0.2 * 0.2)) < 1e-12
    assert abs(float(out.total) - float(out.loss_policy + out.loss_value + out.loss_q + out.loss_entropy)) < 1e-12
    pooled_kl = (_k3(0.1) + _k3(-0.2) + _k3(0.3)) / 3  # relevant (head, step) pairs only
    assert abs(float(out.approx_kl) - pooled_kl) < 1e-12
    assert abs(float(out.head_approx_kl["blueprint"]) - _k3(0.3)) < 1e-12
    # |r - 1| > 0.2 only for log r = 0.3 (r = 1.35); log r = -0.2 gives |r - 1| = 0.18.
    assert abs(float(out.clip_fraction) - 1 / 3) < 1e-12
    assert float(out.head_clip_fractions["op"]) == 0.0 and float(out.head_clip_fractions["blueprint"]) == 1.0
    assert abs(float(out.max_ratio_deviation) - (r(0.3) - 1.0)) < 1e-12
    assert float(out.head_entropies["blueprint"]) == 0.2


def _two_head_loss(**overrides: Any) -> PPOLoss:
    """``ppo_loss`` on the two-head inputs with unit advantages, zero values and no Q or entropy terms."""
    new, old, relevance, entropies, valid = _two_head_inputs()
    arguments: dict[str, Any] = {
        "new_log_probs": new,
        "old_log_probs": old,
        "entropies": entropies,
        "advantages": torch.ones(1, 3, dtype=torch.float64),
        "relevance": relevance,
        "valid": valid,
        "values": torch.zeros(1, 3, dtype=torch.float64),
        "value_targets": torch.zeros(1, 3, dtype=torch.float64),
        "q_values": None,
        "clip_coef": 0.2,
        "value_coef": 0.5,
        "q_coef": 0.25,
        "entropy_coefs": {},
    }
    arguments.update(overrides)
    return ppo_loss(**arguments)


def test_per_head_normalisation_averages_each_head_over_its_own_relevant_steps() -> None:
    r = math.exp
    op_surr = min(r(0.1), 1.2) + min(r(-0.2) * -1.0, 0.8 * -1.0)
    bp_surr = min(r(0.3), 1.2)
    joint = _two_head_loss(advantages=torch.tensor([[1.0, -1.0, 100.0]], dtype=torch.float64))
    per_head = _two_head_loss(
        advantages=torch.tensor([[1.0, -1.0, 100.0]], dtype=torch.float64), per_head_normalisation=True
    )
    assert abs(float(joint.loss_policy) - -(op_surr + bp_surr) / 2) < 1e-12  # both heads over the 2 valid steps
    assert abs(float(per_head.loss_policy) - -(op_surr / 2 + bp_surr / 1)) < 1e-12  # blueprint: its 1 step


def test_ratio_of_one_gives_zero_kl_and_deviation() -> None:
    new = _two_head_inputs()[0]
    out = _two_head_loss(new_log_probs=new, old_log_probs={h: v.clone() for h, v in new.items()})
    assert float(out.approx_kl) == 0.0 and float(out.max_ratio_deviation) == 0.0 and float(out.clip_fraction) == 0.0
    assert float(out.loss_q) == 0.0 and float(out.loss_entropy) == 0.0


def test_head_irrelevant_to_every_executed_op_gets_exactly_zero_gradient() -> None:
    space = morphogenetic_action_space()
    g = torch.Generator().manual_seed(0)
    batch, steps = 3, 6
    executed = torch.tensor([LifecycleOp.WAIT, LifecycleOp.PRUNE, LifecycleOp.FOSSILIZE]).repeat_interleave(steps // 3)
    executed = executed.repeat(batch, 1)
    valid = torch.ones(batch, steps, dtype=torch.bool)
    executed[0, -1] = LifecycleOp.GERMINATE  # blueprint matters here ... but the step is padding
    valid[0, -1] = False
    logits = {h: torch.randn(batch, steps, n, generator=g, requires_grad=True) for h, n in space.sizes().items()}
    actions = {h: torch.randint(0, n, (batch, steps), generator=g) for h, n in space.sizes().items()}
    new_lp, entropies = {}, {}
    for head, head_logits in logits.items():
        log_probs = torch.log_softmax(head_logits, dim=-1)
        new_lp[head] = log_probs.gather(-1, actions[head].unsqueeze(-1)).squeeze(-1)
        entropies[head] = -(log_probs.exp() * log_probs).sum(-1) / math.log(log_probs.shape[-1])
    old_lp = {h: (lp + 0.1 * torch.randn(lp.shape, generator=g)).detach() for h, lp in new_lp.items()}
    out = ppo_loss(
        new_log_probs=new_lp,
        old_log_probs=old_lp,
        entropies=entropies,
        advantages=torch.randn(batch, steps, generator=g),
        relevance=space.relevance_masks(executed),
        valid=valid,
        values=torch.zeros(batch, steps),
        value_targets=torch.zeros(batch, steps),
        q_values=None,
        clip_coef=0.2,
        value_coef=0.5,
        q_coef=0.0,
        entropy_coefs={h: 0.05 for h in space.head_names},
    )
    out.total.backward()
    # WAIT/PRUNE/FOSSILIZE never use blueprint, style, tempo or alpha_target: exactly zero gradient.
    for head in ("blueprint", "style", "tempo", "alpha_target"):
        assert torch.count_nonzero(logits[head].grad) == 0, head
    for head in ("op", "slot", "alpha_speed", "alpha_curve"):  # PRUNE uses the alpha speed/curve heads
        assert torch.count_nonzero(logits[head].grad) > 0, head
    assert float(out.head_entropies["blueprint"]) == 0.0 and float(out.head_approx_kl["blueprint"]) == 0.0


def test_bad_clip_coef_raises() -> None:
    with pytest.raises(ValueError, match="clip_coef"):
        _two_head_loss(clip_coef=0.0)


def test_explained_variance_exact_cases() -> None:
    target = torch.tensor([1.0, 2.0, 3.0, 100.0])
    valid = torch.tensor([True, True, True, False])
    assert explained_variance(target, target, valid) == 1.0
    assert explained_variance(torch.full((4,), 2.0), target, valid) == 0.0
    reversed_prediction = torch.tensor([3.0, 2.0, 1.0, 0.0])  # residuals -2, 0, 2: variance 8/3 vs 2/3
    assert explained_variance(reversed_prediction, target, valid) == pytest.approx(1.0 - (8.0 / 3.0) / (2.0 / 3.0))
    assert math.isnan(explained_variance(target, torch.ones(4), valid))
