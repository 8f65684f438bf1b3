"""``PPOAgent``: recurrent, factored PPO over any trainable ``PolicyBundle``.

The agent owns the optimiser, the value normaliser and a few counters; the policy is injected and
only reached through the ``PolicyBundle`` protocol. One :meth:`PPOAgent.update` per round:

1. GAE on the buffer's rewards, with critic outputs denormalised to the return scale;
2. the value normaliser absorbs the round's returns; the critic's targets are the normalised returns;
3. global advantage normalisation;
4. **anchored old log-probs**: one ``evaluate_actions`` pass at the current weights (outputs
   detached), in the exact minibatch groups of the first epoch, gives the "old" log-probs. Evaluating the same
   sequences with the same weights and the same batch shapes makes the first minibatch's ratio
   exactly 1 whatever the numerical path of the rollout (step-by-step recurrent calls, other batch
   sizes, a compiled network). How far the rollout's stored log-probs are from these is reported
   as ``rollout_log_prob_drift``: it should be rounding noise; anything larger means the rollout
   and the update saw different inputs;
5. ``update_epochs`` passes over minibatches of whole environment sequences (full BPTT from each
   row's stored initial hidden state), the factored loss of :mod:`.ppo_loss`, gradient clipping,
   Adam; the update stops as soon as a minibatch's approx-KL exceeds ``1.5 * target_kl`` (checked
   before that minibatch's step, so the step is not taken).

Data-parallel runs inject a :class:`~esper.simic.agent.collectives.Collectives`: each replica
updates on its own environments' rows, and the gradients (through ``policy.parameters()``), the
advantage statistics, the value normaliser and the approx-KL of the early stop are every
replica's, so all replicas take the same steps and keep identical weights. Each replica shuffles
its own rows, so the update equals the single-process one in distribution, not bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from esper.simic.agent.buffer import RolloutBatch, RolloutBuffer, env_minibatches
from esper.simic.agent.collectives import LOCAL, Collectives, mean_over_replicas
from esper.simic.agent.config import PPOConfig
from esper.simic.agent.gae import generalized_advantage_estimate, normalize_advantages
from esper.simic.agent.normalization import ValueNormalizer
from esper.simic.agent.ppo_loss import PPOLoss, explained_variance, ppo_loss
from esper.tamiyo.policy import EvalResult, PolicyBundle


@dataclass(frozen=True, slots=True)
class UpdateMetrics:
    """What one :meth:`PPOAgent.update` did. Loss and ratio diagnostics are means over every minibatch
    evaluated (including the one that triggered early stopping, whose step was not taken)."""

    policy_loss: float
    """Summed per-head clipped-surrogate loss."""
    value_loss: float
    """Weighted value loss (normalised scale)."""
    q_loss: float
    """Weighted auxiliary Q loss (0 when the policy has no Q head)."""
    entropy_loss: float
    """Weighted entropy term (negative: it is a bonus)."""
    entropy_coef: float
    """Entropy weight of this update before the per-head multipliers (moves only under an anneal)."""
    total_loss: float
    """Sum of the four terms above."""
    approx_kl: float
    """k3 approx-KL over relevant (head, step) pairs."""
    clip_fraction: float
    """Share of relevant (head, step) pairs whose ratio left the clip range."""
    first_ratio_deviation: float
    """``max |ratio - 1|`` on the first minibatch of the first epoch; exactly 0 by construction."""
    rollout_log_prob_drift: float
    """``max |stored - recomputed|`` log-prob over valid steps and heads (rounding noise expected)."""
    head_entropies: Mapping[str, float]
    """Mean normalised entropy per head over the steps where it mattered."""
    head_approx_kl: Mapping[str, float]
    """Approx-KL per head."""
    head_clip_fractions: Mapping[str, float]
    """Clip fraction per head."""
    explained_variance: float
    """Of the returns by the critic before the update, on the return scale (NaN for constant returns)."""
    advantage_mean: float
    """Mean raw advantage over valid steps (before normalisation)."""
    advantage_std: float
    """Population std of the raw advantages over valid steps."""
    return_mean: float
    """Mean GAE return over valid steps (reward-normalised scale)."""
    return_std: float
    """Std of the GAE returns over valid steps."""
    value_target_scale: float
    """Divisor applied to the returns to form the critic's targets (1 without value normalisation)."""
    grad_norm: float
    """Mean global gradient norm before clipping over the steps taken (NaN if none)."""
    gradient_steps: int
    """Optimiser steps taken."""
    epochs_completed: int
    """Epochs run to the end (fewer than ``update_epochs`` after an early stop)."""
    early_stopped: bool
    """Whether the KL early stop fired."""
    early_stop_epoch: int | None
    """0-based epoch in which it fired, or None."""
    num_valid_steps: int
    """Valid (non-padding) steps in the rollout."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (per-head mappings become plain dicts)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out


@dataclass(frozen=True, slots=True)
class _Targets:
    """Per-round learning targets, all ``[N, T]`` over the whole buffer, plus their statistics."""

    advantages: torch.Tensor
    value_targets: torch.Tensor
    relevance: Mapping[str, torch.Tensor]
    stats: Mapping[str, float]
    """The :class:`UpdateMetrics` fields fixed by the targets (``explained_variance`` to ``value_target_scale``)."""


class PPOAgent:
    """Trains an injected ``PolicyBundle`` with factored, recurrent PPO.

    Args:
        policy: a bundle with trainable parameters (``lstm``, ``mlp``, a plugin...). Its constructor
            options (probability floors included) are its own business: PPO only calls the protocol.
        config: the hyperparameters.
        generator: CPU ``torch.Generator`` for the minibatch shuffles; None = a fresh one seeded with 0.
            Its state is part of :meth:`state_dict` so a resumed run shuffles identically.
        reduce: cross-replica reductions of a data-parallel run (default: one process, no reduction).

    Raises:
        ValueError: the policy has no parameter that requires grad (e.g. the heuristic), or the config names
            heads the policy does not have.
    """

    def __init__(
        self,
        policy: PolicyBundle,
        config: PPOConfig,
        *,
        generator: torch.Generator | None = None,
        reduce: Collectives = LOCAL,
    ):
        params = [p for p in policy.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                f"policy {type(policy).__name__} has no trainable parameters; PPO can only train a learned "
                "policy such as 'lstm' or 'mlp' (rule-based bundles like 'heuristic' are for evaluation)"
            )
        config.entropy_coefs(policy.action_space)  # refuses unknown head names now, not at the first update
        self.policy = policy
        self.config = config
        self.params = params
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, eps=config.adam_eps)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.reduce = reduce
        self.value_normalizer = (
            ValueNormalizer(warmup_samples=config.value_norm_warmup, reduce=reduce)
            if config.normalize_value_targets
            else None
        )
        self.num_updates = 0
        """Calls of :meth:`update` that took at least one optimiser step."""
        self.num_gradient_steps = 0
        """Optimiser steps taken over the agent's life."""

    def denormalize_values(self, values: torch.Tensor) -> torch.Tensor:
        """Critic outputs on the return scale (identity without value normalisation)."""
        return values if self.value_normalizer is None else self.value_normalizer.denormalize(values)

    def _check_buffer(self, buffer: RolloutBuffer) -> None:
        policy = self.policy
        if buffer.action_space != policy.action_space:
            raise ValueError("the rollout buffer was built for another action space than the policy's")
        if buffer.feature_dim != policy.feature_dim:
            raise ValueError(f"buffer feature_dim {buffer.feature_dim} != policy feature_dim {policy.feature_dim}")
        if buffer.device != policy.device:
            raise ValueError(f"buffer lives on {buffer.device} but the policy on {policy.device}")

    def _evaluate(self, batch: RolloutBatch) -> EvalResult:
        return self.policy.evaluate_actions(batch.obs, batch.actions, batch.masks, hidden=batch.initial_hidden)

    def _anchor_log_probs(self, data: RolloutBatch, groups: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """Log-probs ``[N, T]`` per head at the current weights, evaluated in the minibatch ``groups``.

        Deliberately not under ``torch.no_grad()``: grad mode can select other kernels (on CPU the
        LSTM runs oneDNN's inference kernel without grad, which rounds differently), and the point
        of the anchor is to be bit-identical to the grad-enabled pass of the first minibatch. Each
        group's graph is dropped as soon as its outputs are detached.
        """
        anchored = {h: torch.zeros_like(lp) for h, lp in data.log_probs.items()}
        for group in groups:
            index = group.to(data.valid.device)
            result = self._evaluate(data.select(index))
            for head, log_prob in result.log_probs.items():
                anchored[head][index] = log_prob.detach().float()
        return anchored

    def update(self, buffer: RolloutBuffer) -> UpdateMetrics:
        """One PPO update on the round in ``buffer`` (the buffer is read, not modified).

        Raises:
            ValueError: the buffer does not fit the policy or holds no valid step.
            FloatingPointError: a loss or gradient norm came out non-finite (nothing is stepped with it).
        """
        self._check_buffer(buffer)
        config, data = self.config, buffer.data()
        valid = data.valid
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError("the rollout buffer holds no valid step to learn from")
        num_minibatches = config.minibatches_for(data.num_envs)
        first_groups = env_minibatches(data.num_envs, num_minibatches, self.generator)
        prepared = self._prepare_targets(data)
        entropy_coef = config.entropy_coef_at(self.num_updates)
        entropy_coefs = config.entropy_coefs(self.policy.action_space, self.num_updates)

        old_log_probs = self._anchor_log_probs(data, first_groups)
        drift = max(float((old_log_probs[h] - data.log_probs[h])[valid].abs().max()) for h in old_log_probs)

        losses: list[PPOLoss] = []
        grad_norms: list[torch.Tensor] = []
        stop_epoch: int | None = None
        epochs_completed = 0
        for epoch in range(config.update_epochs):
            groups = first_groups if epoch == 0 else env_minibatches(data.num_envs, num_minibatches, self.generator)
            for group in groups:
                index = group.to(valid.device)
                loss = self._minibatch_loss(data.select(index), index, old_log_probs, prepared, entropy_coefs)
                losses.append(loss)
                # Every replica decides on the mean KL (and fails on any replica's non-finite loss).
                decided = mean_over_replicas(torch.stack([loss.approx_kl, loss.total.detach()]), self.reduce)
                kl, total = (float(x) for x in decided.tolist())
                if config.kl_stop_threshold is not None and kl > config.kl_stop_threshold:
                    stop_epoch = epoch
                    break
                if not math.isfinite(total):
                    raise FloatingPointError(f"non-finite PPO loss in epoch {epoch}: {_describe(loss)}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.total.backward()
                self._average_gradients()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm)
                if not math.isfinite(float(grad_norm)):  # clipping would scale every gradient to NaN
                    raise FloatingPointError(f"non-finite gradient norm in epoch {epoch} (loss {total:.4g})")
                grad_norms.append(grad_norm)
                self.optimizer.step()
            if stop_epoch is not None:
                break
            epochs_completed += 1

        self.num_gradient_steps += len(grad_norms)
        self.num_updates += int(bool(grad_norms))
        return _summarise(
            losses,
            grad_norms,
            prepared,
            entropy_coef=entropy_coef,
            drift=drift,
            epochs_completed=epochs_completed,
            stop_epoch=stop_epoch,
            num_valid=num_valid,
        )

    def _average_gradients(self) -> None:
        """Replace each parameter's gradient by its mean over replicas (one flat all-reduce)."""
        if self.reduce.world_size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.reduce.average_([flat])
        offset = 0
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = flat[offset : offset + grad.numel()].view_as(grad).clone()
            offset += grad.numel()

    def _prepare_targets(self, data: RolloutBatch) -> _Targets:
        """GAE on the return scale, value-normaliser update, critic targets, advantages and relevance.

        GAE uses the value normaliser's statistics from before this round (those the critic was
        trained against); the targets use the statistics updated with this round's returns.
        """
        config, valid = self.config, data.valid
        values = self.denormalize_values(data.values)
        gae = generalized_advantage_estimate(
            data.rewards,
            values,
            self.denormalize_values(data.bootstrap_values),
            data.terminated,
            data.truncated,
            valid,
            gamma=config.gamma,
            lam=config.gae_lambda,
        )
        valid_returns = gae.returns[valid]
        if self.value_normalizer is not None:
            self.value_normalizer.update(valid_returns)
        scale = 1.0 if self.value_normalizer is None else self.value_normalizer.scale
        normalised = normalize_advantages(
            gae.advantages,
            valid,
            std_floor=config.advantage_std_floor,
            moments=self._advantage_moments(gae.advantages, valid),
        )
        return _Targets(
            advantages=normalised.advantages if config.normalize_advantages else gae.advantages,
            value_targets=gae.returns / scale,
            relevance=self.policy.action_space.relevance_masks(data.executed_op),
            stats={
                "explained_variance": explained_variance(values, gae.returns, valid),
                "advantage_mean": float(normalised.mean),
                "advantage_std": float(normalised.std),
                "return_mean": float(valid_returns.mean()),
                "return_std": float(valid_returns.std(correction=0)),
                "value_target_scale": scale,
            },
        )

    def _advantage_moments(
        self, advantages: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean, population std) of every replica's valid advantages; None with one replica."""
        if self.reduce.world_size == 1:
            return None
        selected = advantages[valid].double()
        local = torch.stack(
            [torch.tensor(float(selected.numel()), dtype=torch.float64), selected.sum(), selected.square().sum()]
        )
        count, total, squares = torch.stack(self.reduce.gather(local.to(advantages.device))).sum(dim=0)
        mean = total / count
        std = (squares / count - mean.square()).clamp_min(0.0).sqrt()
        return mean.to(advantages.dtype), std.to(advantages.dtype)

    def _minibatch_loss(
        self,
        batch: RolloutBatch,
        index: torch.Tensor,
        old_log_probs: Mapping[str, torch.Tensor],
        prepared: _Targets,
        entropy_coefs: Mapping[str, float],
    ) -> PPOLoss:
        """Evaluate the env rows ``index`` (already selected as ``batch``) and build their loss."""
        result = self._evaluate(batch)

        def rows(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.index_select(0, index)

        return ppo_loss(
            new_log_probs=result.log_probs,
            old_log_probs={h: rows(lp) for h, lp in old_log_probs.items()},
            entropies=result.entropies,
            advantages=rows(prepared.advantages),
            relevance={h: rows(r) for h, r in prepared.relevance.items()},
            valid=batch.valid,
            values=result.value,
            value_targets=rows(prepared.value_targets),
            q_values=result.q_value,
            clip_coef=self.config.clip_coef,
            value_coef=self.config.value_coef,
            q_coef=self.config.q_coef,
            entropy_coefs=entropy_coefs,
            per_head_normalisation=self.config.per_head_normalisation,
        )

    def state_dict(self) -> dict[str, Any]:
        """Optimiser, counters, shuffle RNG and value normaliser: plain tensors/numbers, ``weights_only``-loadable.

        The policy's own weights are not included (``policy.state_dict()`` is saved next to this).
        """
        return {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "num_updates": self.num_updates,
            "num_gradient_steps": self.num_gradient_steps,
            "value_normalizer": None if self.value_normalizer is None else self.value_normalizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (after the policy's weights were loaded).

        Raises:
            ValueError: keys are missing, or the saved run used value normalisation and this config
                does not (or the reverse).
        """
        missing = {"optimizer", "generator", "num_updates", "num_gradient_steps", "value_normalizer"} - set(state)
        if missing:
            raise ValueError(f"PPO agent state is missing {sorted(missing)}")
        saved_vn = state["value_normalizer"]
        if (saved_vn is None) != (self.value_normalizer is None):
            raise ValueError(
                f"saved agent state has normalize_value_targets={saved_vn is not None}, "
                f"this config has {self.value_normalizer is not None}"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.num_updates = int(state["num_updates"])
        self.num_gradient_steps = int(state["num_gradient_steps"])
        if self.value_normalizer is not None:
            self.value_normalizer.load_state_dict(saved_vn)


def _describe(loss: PPOLoss) -> str:
    terms = ("loss_policy", "loss_value", "loss_q", "loss_entropy")
    return ", ".join(f"{name}={float(getattr(loss, name)):.4g}" for name in terms)


def _mean(values: list[torch.Tensor]) -> float:
    return float(torch.stack([v.detach().float() for v in values]).mean()) if values else float("nan")


def _summarise(
    losses: list[PPOLoss],
    grad_norms: list[torch.Tensor],
    prepared: _Targets,
    *,
    entropy_coef: float,
    drift: float,
    epochs_completed: int,
    stop_epoch: int | None,
    num_valid: int,
) -> UpdateMetrics:
    heads = list(losses[0].head_entropies)

    def per_head(attr: str) -> dict[str, float]:
        return {h: _mean([getattr(loss, attr)[h] for loss in losses]) for h in heads}

    return UpdateMetrics(
        policy_loss=_mean([loss.loss_policy for loss in losses]),
        value_loss=_mean([loss.loss_value for loss in losses]),
        q_loss=_mean([loss.loss_q for loss in losses]),
        entropy_loss=_mean([loss.loss_entropy for loss in losses]),
        entropy_coef=entropy_coef,
        total_loss=_mean([loss.total for loss in losses]),
        approx_kl=_mean([loss.approx_kl for loss in losses]),
        clip_fraction=_mean([loss.clip_fraction for loss in losses]),
        first_ratio_deviation=float(losses[0].max_ratio_deviation),
        rollout_log_prob_drift=drift,
        head_entropies=per_head("head_entropies"),
        head_approx_kl=per_head("head_approx_kl"),
        head_clip_fractions=per_head("head_clip_fractions"),
        **prepared.stats,
        grad_norm=_mean(grad_norms),
        gradient_steps=len(grad_norms),
        epochs_completed=epochs_completed,
        early_stopped=stop_epoch is not None,
        early_stop_epoch=stop_epoch,
        num_valid_steps=num_valid,
    )
