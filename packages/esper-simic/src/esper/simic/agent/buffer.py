"""Rollout storage for recurrent PPO: preallocated ``[num_envs, num_steps, ...]`` tensors.

One round = ``num_envs`` episodes run in lockstep; row ``i`` of every tensor is environment ``i``'s
episode, column ``t`` its step ``t``. Rows stay whole sequences so the update can
replay each one from the stored initial recurrent state (full BPTT); minibatches are groups of rows,
never shuffled time steps (CleanRL's ``ppo_atari_lstm``).

What is stored is exactly what the policy saw and did:

* normalised observation features and blueprint indices;
* per-head actions and log-probs (``actions[op_head]`` is the *sampled* op), and the normalised
  entropies (diagnostics only: the trainer reports their means, the loss never reads them);
* per-head masks, with the slot mask replaced by the ``slot_by_op`` row of the sampled op
  (``op_conditioned_slot_mask``), so the update leg scores the slot from the same distribution;
* the *executed* op separately (WAIT when the chosen action was invalid): causal relevance in the
  loss follows what actually happened;
* values (critic scale), rewards (as the caller normalised them), terminated / truncated / valid
  flags and the bootstrap value V(s_{t+1}) of truncated steps.

Steps of environments that already finished (``active`` False) are padding: they get the
canonical one-hot masks and placeholder actions, so evaluating them can never meet an empty mask
row, and ``valid`` False keeps them out of every loss term.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from esper.tamiyo.contract import ActionMasks, ActionSpace, Observation, op_conditioned_slot_mask
from esper.tamiyo.policy import ActionResult, Hidden, PolicyBundle


@dataclass(frozen=True, slots=True)
class RolloutBatch:
    """An immutable view of whole environment sequences, ``B`` rows by ``T`` steps.

    Tensors share storage with the buffer (no copies) unless produced by :meth:`select`.
    """

    obs: Observation
    """Normalised ``features`` float32 ``[B, T, F]`` and ``blueprint_indices`` int64 ``[B, T, S]``."""
    actions: Mapping[str, torch.Tensor]
    """int64 ``[B, T]`` per head; the op head holds the *sampled* op."""
    log_probs: Mapping[str, torch.Tensor]
    """float32 ``[B, T]`` per head, as computed at rollout time (0 at padding)."""
    entropies: Mapping[str, torch.Tensor]
    """float32 ``[B, T]`` per head, normalised entropy at rollout time (0 at padding; diagnostics only)."""
    masks: ActionMasks
    """``heads[h]`` bool ``[B, T, size_h]`` (slot mask op-conditioned), ``slot_by_op`` None."""
    executed_op: torch.Tensor
    """int64 ``[B, T]`` op that actually ran (drives causal relevance)."""
    values: torch.Tensor
    """float32 ``[B, T]`` V(s_t) as the policy returned it (value-normaliser scale)."""
    rewards: torch.Tensor
    """float32 ``[B, T]`` rewards as the trainer stored them (normalised scale), 0 at padding."""
    terminated: torch.Tensor
    """bool ``[B, T]`` true terminals (no bootstrap)."""
    truncated: torch.Tensor
    """bool ``[B, T]`` time-limit ends (bootstrap from ``bootstrap_values``)."""
    valid: torch.Tensor
    """bool ``[B, T]`` steps that happened (False = padding)."""
    bootstrap_values: torch.Tensor
    """float32 ``[B, T]`` V(s_{t+1}) at truncated steps (value-normaliser scale), 0 elsewhere."""
    initial_hidden: Hidden
    """Recurrent state at t=0 of each row, every tensor with batch ``B`` at dim 1 (None if feed-forward)."""

    @property
    def num_envs(self) -> int:
        return int(self.valid.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.valid.shape[1])

    def select(self, env_indices: torch.Tensor) -> RolloutBatch:
        """The rows ``env_indices`` (int64 ``[B']``) of every tensor, hidden state sliced on dim 1."""
        index = env_indices.to(device=self.valid.device, dtype=torch.long)

        def rows(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.index_select(0, index)

        return RolloutBatch(
            obs=Observation(rows(self.obs.features), rows(self.obs.blueprint_indices)),
            actions={h: rows(a) for h, a in self.actions.items()},
            log_probs={h: rows(lp) for h, lp in self.log_probs.items()},
            entropies={h: rows(e) for h, e in self.entropies.items()},
            masks=ActionMasks({h: rows(m) for h, m in self.masks.heads.items()}, None),
            executed_op=rows(self.executed_op),
            values=rows(self.values),
            rewards=rows(self.rewards),
            terminated=rows(self.terminated),
            truncated=rows(self.truncated),
            valid=rows(self.valid),
            bootstrap_values=rows(self.bootstrap_values),
            initial_hidden=None
            if self.initial_hidden is None
            else tuple(h.index_select(1, index) for h in self.initial_hidden),
        )


def env_minibatches(num_envs: int, num_minibatches: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Shuffle ``range(num_envs)`` with ``generator`` and split it into ``num_minibatches`` groups.

    Group sizes differ by at most one. Returns CPU int64 index tensors.

    Raises:
        ValueError: ``num_minibatches`` is not in ``[1, num_envs]``.
    """
    if not 1 <= num_minibatches <= num_envs:
        raise ValueError(
            f"num_minibatches must be between 1 and num_envs={num_envs} (minibatches are whole environments), "
            f"got {num_minibatches}"
        )
    order = torch.randperm(num_envs, generator=generator)
    return tuple(torch.tensor_split(order, num_minibatches))


class RolloutBuffer:
    """Preallocated storage for one round of ``num_envs`` lockstep episodes of up to ``num_steps`` steps.

    Usage per round: ``reset(policy.initial_hidden(num_envs))``, then one :meth:`add` per
    lockstep step, then hand the buffer to ``PPOAgent.update``.
    """

    def __init__(
        self,
        *,
        num_envs: int,
        num_steps: int,
        feature_dim: int,
        num_slots: int,
        action_space: ActionSpace,
        device: torch.device | str = "cpu",
    ):
        for name, value in (("num_envs", num_envs), ("num_steps", num_steps), ("feature_dim", feature_dim)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_slots < 0:
            raise ValueError(f"num_slots must be >= 0, got {num_slots}")
        self.num_envs, self.num_steps = num_envs, num_steps
        self.feature_dim, self.num_slots = feature_dim, num_slots
        self.action_space = action_space
        self.device = torch.device(device)
        shape = (num_envs, num_steps)

        def zeros(*size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(size, dtype=dtype, device=self.device)

        self.features = zeros(*shape, feature_dim)
        self.blueprint_indices = torch.full((*shape, num_slots), -1, dtype=torch.long, device=self.device)
        self.actions = {h: torch.zeros(shape, dtype=torch.long, device=self.device) for h in action_space.head_names}
        self.log_probs = {h: zeros(*shape) for h in action_space.head_names}
        self.entropies = {h: zeros(*shape) for h in action_space.head_names}
        self.masks = {h: zeros(*shape, n, dtype=torch.bool) for h, n in action_space.sizes().items()}
        self.executed_op = torch.zeros(shape, dtype=torch.long, device=self.device)
        self.values = zeros(*shape)
        self.rewards = zeros(*shape)
        self.bootstrap_values = zeros(*shape)
        self.terminated = zeros(*shape, dtype=torch.bool)
        self.truncated = zeros(*shape, dtype=torch.bool)
        self.valid = zeros(*shape, dtype=torch.bool)
        self.placeholders = torch.tensor(action_space.placeholders, dtype=torch.long, device=self.device)
        # Bool [size] one-hot at each head's placeholder: the safe mask for padding steps.
        self._padding_masks = {
            h: torch.arange(n, device=self.device) == p
            for (h, n), p in zip(action_space.sizes().items(), action_space.placeholders, strict=True)
        }
        self.initial_hidden: Hidden = None
        self.step = 0
        self._ready = False

    @classmethod
    def for_policy(cls, policy: PolicyBundle, *, num_envs: int, num_steps: int) -> RolloutBuffer:
        """A buffer sized for ``policy`` (features, slots, action space) on its device."""
        return cls(
            num_envs=num_envs,
            num_steps=num_steps,
            feature_dim=policy.feature_dim,
            num_slots=policy.slot_config.num_slots,
            action_space=policy.action_space,
            device=policy.device,
        )

    def reset(self, initial_hidden: Hidden) -> None:
        """Start a new round: every step becomes padding and ``initial_hidden`` (batch ``num_envs`` at
        dim 1, or None for feed-forward policies) is stored (detached copy) as each row's t=0 state."""
        if initial_hidden is not None:
            for tensor in initial_hidden:
                if tensor.dim() < 2 or tensor.shape[1] != self.num_envs:
                    raise ValueError(
                        f"initial hidden tensors need the batch ({self.num_envs} envs) at dim 1, "
                        f"got {list(tensor.shape)}"
                    )
            initial_hidden = tuple(t.detach().to(self.device).clone() for t in initial_hidden)
        self.initial_hidden = initial_hidden
        for index, head in enumerate(self.action_space.head_names):
            self.masks[head][:] = self._padding_masks[head]
            self.actions[head].fill_(self.action_space.placeholders[index])
            self.log_probs[head].zero_()
            self.entropies[head].zero_()
        for tensor in (self.values, self.rewards, self.bootstrap_values, self.terminated, self.truncated, self.valid):
            tensor.zero_()
        self.executed_op.fill_(self.action_space.placeholders[self.action_space.op_index])
        self.step = 0
        self._ready = True

    @property
    def full(self) -> bool:
        return self.step >= self.num_steps

    def _check_step_inputs(self, obs: Observation, masks: ActionMasks, result: ActionResult) -> None:
        n = self.num_envs
        if not self._ready:
            raise RuntimeError("call reset(initial_hidden) before adding steps")
        if self.full:
            raise RuntimeError(f"rollout buffer is full ({self.num_steps} steps); call reset() for a new round")
        if tuple(obs.features.shape) != (n, self.feature_dim):
            raise ValueError(f"obs.features must be [{n}, {self.feature_dim}], got {list(obs.features.shape)}")
        if tuple(obs.blueprint_indices.shape) != (n, self.num_slots):
            raise ValueError(
                f"obs.blueprint_indices must be [{n}, {self.num_slots}], got {list(obs.blueprint_indices.shape)}"
            )
        for head, size in self.action_space.sizes().items():
            if head not in masks.heads or tuple(masks.heads[head].shape) != (n, size):
                got = list(masks.heads[head].shape) if head in masks.heads else "missing"
                raise ValueError(f"mask for head {head!r} must be [{n}, {size}], got {got}")
            if head not in result.actions or tuple(result.actions[head].shape) != (n,):
                raise ValueError(f"action result has no [{n}] action for head {head!r}")

    def add(
        self,
        *,
        obs: Observation,
        masks: ActionMasks,
        result: ActionResult,
        executed_op: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        active: torch.Tensor,
        bootstrap_values: torch.Tensor | None = None,
    ) -> None:
        """Record lockstep step ``self.step`` for all environments and advance.

        Args:
            obs: the *normalised* observation given to the policy (``[N, F]``, ``[N, S]``).
            masks: the masks given to ``get_action`` (``slot_by_op [N, num_ops, S]`` when the action
                space has a slot head; stored as the row of the sampled op).
            result: what ``get_action`` returned (actions, log-probs, entropies, value).
            executed_op: int64 ``[N]`` op the environment actually ran.
            rewards: float ``[N]`` rewards on the training scale (already normalised).
            terminated / truncated: bool ``[N]`` episode ends of this step.
            active: bool ``[N]``; False for envs that had already finished (the step is padding).
            bootstrap_values: float ``[N]`` V(s_{t+1}) (critic scale) for truncated envs, or None
                when no env was truncated (entries of other envs are ignored).

        Raises:
            ValueError: a tensor has the wrong shape, or an env is truncated without bootstrap values.
            RuntimeError: the buffer was not reset, or is already full.
        """
        self._check_step_inputs(obs, masks, result)
        if bootstrap_values is None and bool((truncated.cpu() & active.cpu()).any()):
            raise ValueError("some environments were truncated at this step but no bootstrap_values were given")
        t = self.step
        live = active.to(device=self.device, dtype=torch.bool)
        live_col = live.unsqueeze(-1)
        sampled_op = result.actions[self.action_space.op_head].to(self.device)
        heads = dict(masks.heads)
        slot_head = self.action_space.slot_head
        if masks.slot_by_op is not None and slot_head is not None:
            heads[slot_head] = op_conditioned_slot_mask(masks.slot_by_op.to(self.device), sampled_op)
        for index, head in enumerate(self.action_space.head_names):
            mask = heads[head].to(self.device)
            self.masks[head][:, t] = torch.where(live_col, mask, self._padding_masks[head])
            action = result.actions[head].to(self.device)
            self.actions[head][:, t] = torch.where(live, action, self.placeholders[index])
            log_prob = result.log_probs[head].to(self.device, torch.float32)
            self.log_probs[head][:, t] = torch.where(live, log_prob, torch.zeros_like(log_prob))
            entropy = result.entropies[head].to(self.device, torch.float32)
            self.entropies[head][:, t] = torch.where(live, entropy, torch.zeros_like(entropy))
        self.features[:, t] = obs.features.to(self.device)
        self.blueprint_indices[:, t] = obs.blueprint_indices.to(self.device)
        placeholder_op = self.placeholders[self.action_space.op_index]
        self.executed_op[:, t] = torch.where(live, executed_op.to(self.device), placeholder_op)
        self.values[:, t] = result.value.to(self.device, torch.float32)
        self.rewards[:, t] = torch.where(live, rewards.to(self.device, torch.float32), 0.0)
        self.terminated[:, t] = live & terminated.to(self.device)
        self.truncated[:, t] = live & truncated.to(self.device)
        self.valid[:, t] = live
        if bootstrap_values is not None:
            boot = bootstrap_values.to(self.device, torch.float32)
            self.bootstrap_values[:, t] = torch.where(self.truncated[:, t], boot, 0.0)
        self.step += 1

    def data(self) -> RolloutBatch:
        """All rows over the steps recorded so far, as views (no copies)."""
        if not self._ready:
            raise RuntimeError("the rollout buffer has not been reset yet")
        t = self.step

        def cols(tensor: torch.Tensor) -> torch.Tensor:
            return tensor[:, :t]

        return RolloutBatch(
            obs=Observation(cols(self.features), cols(self.blueprint_indices)),
            actions={h: cols(a) for h, a in self.actions.items()},
            log_probs={h: cols(lp) for h, lp in self.log_probs.items()},
            entropies={h: cols(e) for h, e in self.entropies.items()},
            masks=ActionMasks({h: cols(m) for h, m in self.masks.items()}, None),
            executed_op=cols(self.executed_op),
            values=cols(self.values),
            rewards=cols(self.rewards),
            terminated=cols(self.terminated),
            truncated=cols(self.truncated),
            valid=cols(self.valid),
            bootstrap_values=cols(self.bootstrap_values),
            initial_hidden=self.initial_hidden,
        )
