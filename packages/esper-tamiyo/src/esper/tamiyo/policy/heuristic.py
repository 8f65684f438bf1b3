"""``HeuristicPolicyBundle``: esper-lite's rule-based Tamiyo as a real ``PolicyBundle``.

Registered as ``heuristic`` through esper-tamiyo's ``esper.policies`` entry point. It reads the
observation only through :class:`~esper.tamiyo.contract.ObservationLayout` named fields, returns
a mask-valid action for every environment of any batch, is deterministic, and has no trainable
parameters (PPO refuses it; ``evaluate_actions`` raises). It can run side by side with learned
policies in the same evaluation loop.

Sequential "one seed at a time" behaviour, as in the reference: while a live seed exists
(GERMINATED/TRAINING/BLENDING/HOLDING) the rules act on it; with none, the germination path
decides between WAIT and GERMINATE. One adaptation to masks: the first live seed (in slot order)
whose rule picks a *mask-valid, non-WAIT* op wins; a seed whose pick is masked (e.g. ADVANCE
while the env auto-advances) does not hide later seeds. If nothing fires, the op falls back to
WAIT (or the op head's canonical choice if a mask forbids WAIT).

**Memory.** The per-environment memory (last prune epoch, blueprint penalties, rotation index,
stabilisation latch, accuracies at seed/stage start) is carried in the ``hidden`` state, a single
float32 tensor ``[1, B, 4 + 13 + 3 * S]`` (see :class:`HeuristicMemory`). The bundle object is
stateless, so one instance serves any number of environments, and the memory resets exactly
when a trainer starts an episode with ``initial_hidden`` (all zeros; multiplying by ``1 - done``
resets it too). ``is_recurrent`` is therefore True: callers must thread ``hidden``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Self

import torch
from torch import nn

from esper.tamiyo.contract import (
    ActionMasks,
    ActionSpace,
    BlueprintAction,
    LifecycleOp,
    Observation,
    ObservationLayout,
    SlotConfig,
    morphogenetic_action_space,
    op_conditioned_slot_mask,
)
from esper.tamiyo.policy._checks import (
    check_blueprint_indices,
    check_compile_mode,
    check_hidden,
    check_masks,
    check_observation,
    check_rollout_rows,
)
from esper.tamiyo.policy._heuristic_rules import (
    DEFAULT_ROTATIONS,
    HeuristicConfig,
    HeuristicMemory,
    Signals,
    choose_blueprints,
    germination_ready,
    observe,
    read_signals,
    seed_ops,
)
from esper.tamiyo.policy.results import ActionResult, EvalResult, Hidden

__all__ = ["DEFAULT_ROTATIONS", "HeuristicConfig", "HeuristicMemory", "HeuristicPolicyBundle"]


class HeuristicPolicyBundle:
    """Rule-based Tamiyo over a batch of environments.

    Args:
        slot_config: slot layout of the environments.
        feature_dim: observation length; must equal the layout's size (with or without the episode block) when given.
        topology: host topology (``"mlp"``, ``"cnn"``, ``"transformer"``), selects the default
            blueprint rotation and validates a custom one.
        **config: overrides of :class:`HeuristicConfig` fields (e.g. ``embargo_epochs_after_prune=5``).

    Raises:
        ValueError: mismatched ``feature_dim``, unknown topology, invalid config or rotation.
        TypeError: an unknown config keyword.
    """

    def __init__(
        self, *, slot_config: SlotConfig, feature_dim: int | None = None, topology: str = "mlp", **config: Any
    ) -> None:
        self._slot_config = slot_config
        # The rules read named fields only, so an episode block (a varied benchmark) is carried along unread.
        plain = feature_dim is None
        self._layout = ObservationLayout(slot_config) if plain else ObservationLayout.of_size(slot_config, feature_dim)
        self._config = HeuristicConfig(**config)
        self._topology = topology
        self._rotation = torch.tensor([int(b) for b in self._config.rotation_for(topology)], dtype=torch.long)
        self._action_space = morphogenetic_action_space(slot_config)
        self._device = torch.device("cpu")

    @property
    def config(self) -> HeuristicConfig:
        return self._config

    @property
    def topology(self) -> str:
        return self._topology

    def initial_hidden(self, batch_size: int) -> Hidden:
        """Fresh memory for ``batch_size`` environments: zeros ``[1, B, hidden_dim]`` float32."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return (torch.zeros(1, batch_size, self.hidden_dim, device=self._device),)

    @torch.inference_mode()
    def get_action(
        self,
        obs: Observation,
        masks: ActionMasks,
        hidden: Hidden = None,
        deterministic: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> ActionResult:
        """Decide for ``obs.features [B, F]`` under batched ``masks`` (with ``slot_by_op [B, 6, S]``).

        ``deterministic`` and ``generator`` are the protocol's; the rules are always deterministic
        and draw no random numbers, so both are ignored.
        Log-probs, entropies and values are zeros ``[B]``; ``hidden`` is the updated memory.
        Raises ``ValueError`` on mis-shaped inputs or blueprint indices, ``EmptyMaskError`` if a mask
        row (or the slot row of a valid op) allows no action, as the trainable bundles do.
        """
        (batch,) = check_observation(obs, self._layout.size, self._slot_config.num_slots, sequence=False)
        check_masks(masks, self._action_space, batch_shape=(batch,), rollout=True)
        check_hidden(hidden, self.hidden_dim, batch)
        check_blueprint_indices(obs.blueprint_indices)
        check_rollout_rows(masks, self._action_space)
        features, device = obs.features, obs.features.device
        slot_by_op = masks.slot_by_op.to(device)  # type: ignore[union-attr]  # checked above
        packed = (self.initial_hidden(batch) if hidden is None else hidden)[0].to(device)  # type: ignore[index]
        memory = HeuristicMemory.unpack(packed, self._slot_config.num_slots)
        signals = read_signals(features, self._layout, self._config)
        memory = observe(memory, signals, self._config)

        op, slot, germinate = self._choose_op_and_slot(memory, signals, masks.heads["op"], slot_by_op)
        chosen, next_rotation, rotation_allowed = choose_blueprints(
            memory, self._rotation.to(device), masks.heads["blueprint"], self._config
        )
        use_rotation = germinate & rotation_allowed
        space = self._action_space
        # Every head the op does not use (and style/tempo/alpha for GERMINATE, speed/curve for
        # PRUNE) takes its canonical placeholder: SIGMOID_ADD, STANDARD tempo, FULL amplitude,
        # INSTANT, LINEAR when the masks allow them.
        actions = {head: space.canonical_action(head, masks.heads[head]) for head in space.head_names}
        actions.update(slot=slot, op=op, blueprint=torch.where(use_rotation, chosen, actions["blueprint"]))
        memory = self._remember(memory, signals.epoch, op, slot, obs.blueprint_indices.to(device))
        memory = replace(memory, rotation=torch.where(use_rotation, next_rotation, memory.rotation))

        zeros = torch.zeros(batch, dtype=torch.float32, device=device)
        return ActionResult(
            actions={h: actions[h].to(torch.int64) for h in space.head_names},
            log_probs={h: zeros for h in space.head_names},
            entropies={h: zeros for h in space.head_names},
            value=zeros,
            hidden=(memory.pack(),),
        )

    def _choose_op_and_slot(
        self, memory: HeuristicMemory, signals: Signals, op_mask: torch.Tensor, slot_by_op: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Op ``[B]``, slot ``[B]`` and whether the env germinates ``[B]``, all mask-valid.

        The first seed (slot order) whose rule asks for a non-WAIT op the masks allow wins; else
        GERMINATE on the first slot that allows it when the germination rules say so; else the
        op head's canonical choice (WAIT) with the canonical slot of its ``slot_by_op`` row.
        """
        space = self._action_space
        wanted = seed_ops(memory, signals, self._config)  # [B, S]
        usable = (
            (wanted != int(LifecycleOp.WAIT))
            & slot_by_op.gather(1, wanted.unsqueeze(1)).squeeze(1)
            & op_mask.gather(1, wanted)
        )
        has_seed_op = usable.any(dim=1)
        seed_slot = usable.to(torch.int8).argmax(dim=1)
        seed_op = wanted.gather(1, seed_slot.unsqueeze(1)).squeeze(1)

        germ = int(LifecycleOp.GERMINATE)
        germ_slots = slot_by_op[:, germ] & op_mask[:, germ : germ + 1]
        germinate = ~has_seed_op & germ_slots.any(dim=1) & germination_ready(memory, signals, self._config)
        germ_op = torch.full_like(seed_op, germ)
        op = torch.where(has_seed_op, seed_op, torch.where(germinate, germ_op, space.canonical_action("op", op_mask)))
        fallback_slot = space.canonical_action("slot", op_conditioned_slot_mask(slot_by_op, op))
        germ_slot = germ_slots.to(torch.int8).argmax(dim=1)
        slot = torch.where(has_seed_op, seed_slot, torch.where(germinate, germ_slot, fallback_slot))
        return op, slot, germinate

    def _remember(
        self,
        memory: HeuristicMemory,
        epoch: torch.Tensor,
        op: torch.Tensor,
        slot: torch.Tensor,
        blueprints: torch.Tensor,
    ) -> HeuristicMemory:
        """Record a PRUNE: it starts the embargo and penalises the pruned seed's blueprint."""
        pruned = op == int(LifecycleOp.PRUNE)
        blueprint = blueprints.gather(1, slot.unsqueeze(1)).squeeze(1)  # -1 for an empty slot
        hit = torch.nn.functional.one_hot(blueprint.clamp_min(0), len(BlueprintAction)).to(torch.float32)
        hit = hit * (pruned & (blueprint >= 0)).unsqueeze(1) * self._config.penalty_on_prune
        return replace(
            memory,
            last_prune=torch.where(pruned, epoch + 1, memory.last_prune),
            penalties=memory.penalties + hit,
        )

    def evaluate_actions(
        self, obs: Observation, actions: Mapping[str, torch.Tensor], masks: ActionMasks, hidden: Hidden = None
    ) -> EvalResult:
        """Not available: the heuristic has no distribution to train."""
        raise NotImplementedError("heuristic policy is not trainable")

    def get_value(self, obs: Observation, hidden: Hidden = None) -> torch.Tensor:
        """Zeros ``[B]``: the heuristic has no critic."""
        return torch.zeros(obs.features.shape[0], dtype=torch.float32, device=obs.features.device)

    def parameters(self) -> Iterator[nn.Parameter]:
        """Nothing: no trainable parameters."""
        return iter(())

    def state_dict(self) -> dict[str, Any]:
        """Empty: the heuristic is fully described by ``policy_config``."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Accept the empty state dict; a non-empty one is another architecture (``ValueError`` if strict)."""
        if strict and state_dict:
            raise ValueError(
                f"the heuristic policy has no weights, got a state dict with keys {sorted(state_dict)[:5]}"
            )

    def to(self, device: torch.device | str) -> Self:
        """Record the device ``initial_hidden`` allocates on; decisions follow the observation's device."""
        self._device = torch.device(device)
        return self

    def compile(self, mode: str = "default") -> Self:
        """Nothing to compile; validates ``mode`` so a typo still fails."""
        check_compile_mode(mode)
        return self

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def is_recurrent(self) -> bool:
        """True: the per-episode memory travels in ``hidden``, which callers must thread."""
        return True

    @property
    def action_space(self) -> ActionSpace:
        return self._action_space

    @property
    def slot_config(self) -> SlotConfig:
        return self._slot_config

    @property
    def feature_dim(self) -> int:
        return self._layout.size

    @property
    def hidden_dim(self) -> int:
        """Width of the packed memory tensor (``4 + 13 + 3 * num_slots``)."""
        return HeuristicMemory.width(self._slot_config.num_slots)

    @property
    def network(self) -> nn.Module | None:
        return None

    @property
    def policy_config(self) -> Mapping[str, Any]:
        """``{"topology": ..., **HeuristicConfig fields}``, JSON-able."""
        return {"topology": self._topology, **self._config.to_json()}
