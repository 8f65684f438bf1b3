"""Action masks: which actions are physically possible for the current slot states.

Philosophy: mask only what is impossible or exploitable, never timing. Op
validity is optimistic (an op is valid if any enabled slot allows it) and ``slot_by_op`` then says
which slots go with each op. Every head row always has at least one valid action; a state that
would produce an empty row is an error, never a silent uniform distribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from esper.tamiyo.contract.action_space import ActionSpace, morphogenetic_action_space
from esper.tamiyo.contract.actions import (
    AlphaMode,
    AlphaTargetAction,
    GerminationStyle,
    LifecycleOp,
    topology_blueprints,
)
from esper.tamiyo.contract.slots import SlotConfig
from esper.tamiyo.contract.stages import (
    ADVANCEABLE_STAGES,
    GERMINATION_BLOCKING_STAGES,
    PRUNABLE_STAGES,
    SeedStage,
)

#: Default minimum seed age (epochs) before PRUNE is allowed; scaled for 40-epoch episodes.
DEFAULT_MIN_PRUNE_AGE = 3


class EmptyMaskError(RuntimeError):
    """A mask row with no valid action reached a policy: a bug upstream, never sampled around."""


@dataclass(frozen=True, slots=True)
class SlotState:
    """What the mask rules need to know about the seed in one slot (``None`` = empty slot)."""

    stage: int
    """``SeedStage`` value (kept as int so it is cheap and compile-friendly)."""
    age_epochs: int = 0
    """Epochs since germination."""
    alpha_mode: int = AlphaMode.HOLD
    """``AlphaMode`` value of the seed's alpha controller; PRUNE and retarget need HOLD (idle)."""


@dataclass(frozen=True, slots=True)
class ActionMasks:
    """Bool masks per head plus the op-conditioned slot mask.

    Single environment: ``heads[h]`` is ``[size_h]`` and ``slot_by_op`` is ``[num_ops, num_slots]``.
    Batched: a leading ``[B]`` dimension on every tensor. In a rollout buffer (and in
    ``evaluate_actions``) the slot mask is already the ``slot_by_op`` row of the op taken and
    ``slot_by_op`` is ``None``.
    """

    heads: Mapping[str, torch.Tensor]
    slot_by_op: torch.Tensor | None = None

    def __getitem__(self, head: str) -> torch.Tensor:
        return self.heads[head]

    def to(self, device: torch.device | str) -> ActionMasks:
        """Copy of the masks on ``device``."""
        return ActionMasks(
            {h: m.to(device) for h, m in self.heads.items()},
            None if self.slot_by_op is None else self.slot_by_op.to(device),
        )


def op_conditioned_slot_mask(slot_by_op: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
    """Row of ``slot_by_op`` ``[B, num_ops, S]`` for each op ``[B]`` → ``[B, S]``.

    This is the slot mask a rollout buffer stores so the update leg sees the same slot
    distribution as the rollout leg.
    """
    index = ops.long().view(-1, 1, 1).expand(-1, 1, slot_by_op.shape[-1])
    return slot_by_op.gather(1, index).squeeze(1)


def _validate_inputs(
    slot_states: Mapping[str, SlotState | None], enabled: Sequence[str], slot_config: SlotConfig, topology: str
) -> None:
    topology_blueprints(topology)  # raises for an unknown topology
    if not enabled:
        raise ValueError("enabled_slots is empty: at least one slot must be enabled")
    for slot_id in enabled:
        if slot_id not in slot_config.slot_ids:
            raise ValueError(f"enabled slot {slot_id!r} is not in the slot config {list(slot_config.slot_ids)}")
        if slot_id not in slot_states:
            raise ValueError(f"slot_states has no entry for enabled slot {slot_id!r} (use None for an empty slot)")


def compute_action_masks(
    slot_states: Mapping[str, SlotState | None],
    *,
    slot_config: SlotConfig | None = None,
    enabled_slots: Sequence[str] | None = None,
    topology: str = "cnn",
    total_seeds: int = 0,
    max_seeds: int = 0,
    min_prune_age: int = DEFAULT_MIN_PRUNE_AGE,
    auto_advance: bool = True,
    action_space: ActionSpace | None = None,
) -> ActionMasks:
    """Masks for one environment.

    Args:
        slot_states: ``{slot_id: SlotState | None}`` for at least every enabled slot; None = empty.
        slot_config: slot order (default 3 slots).
        enabled_slots: slots the policy may target (default: all of ``slot_config``).
        topology: host topology, selects the blueprint set (``cnn``, ``mlp``, ``transformer``).
        total_seeds: seeds germinated so far this episode.
        max_seeds: germination limit; 0 means unlimited.
        min_prune_age: PRUNE needs ``age_epochs >= min_prune_age``.
        auto_advance: when on, the environment advances GERMINATED→TRAINING→BLENDING→HOLDING by
            itself and ADVANCE is masked.
        action_space: defaults to the morphogenetic space of ``slot_config``.

    Returns:
        ``ActionMasks`` with ``heads[h]: bool[size_h]`` and ``slot_by_op: bool[num_ops, num_slots]``.

    Raises:
        ValueError: unknown topology, no enabled slot, an enabled slot missing from the config or
            from ``slot_states``.
    """
    config = slot_config or SlotConfig()
    space = action_space or morphogenetic_action_space(config)
    enabled = list(config.slot_ids) if enabled_slots is None else list(enabled_slots)
    _validate_inputs(slot_states, enabled, config, topology)

    # Built in Python lists and converted once: per-element tensor writes cost microseconds each.
    num_slots = config.num_slots
    slot = [False] * num_slots
    by_op = [[False] * num_slots for _ in LifecycleOp]
    blocked = False
    for slot_id in enabled:
        i = config.index_of(slot_id)
        slot[i] = True
        state = slot_states[slot_id]
        if state is None:
            by_op[LifecycleOp.GERMINATE][i] = True
            continue
        stage = SeedStage(state.stage)
        idle = state.alpha_mode == AlphaMode.HOLD
        blocked |= stage in GERMINATION_BLOCKING_STAGES
        by_op[LifecycleOp.ADVANCE][i] = not auto_advance and stage in ADVANCEABLE_STAGES
        by_op[LifecycleOp.FOSSILIZE][i] = stage == SeedStage.HOLDING
        by_op[LifecycleOp.PRUNE][i] = stage in PRUNABLE_STAGES and state.age_epochs >= min_prune_age and idle
        by_op[LifecycleOp.SET_ALPHA_TARGET][i] = stage in (SeedStage.BLENDING, SeedStage.HOLDING) and idle
    if blocked or (max_seeds > 0 and total_seeds >= max_seeds):
        by_op[LifecycleOp.GERMINATE] = [False] * num_slots
    by_op[LifecycleOp.WAIT] = list(slot)
    op = [any(row) for row in by_op]
    op[LifecycleOp.WAIT] = True
    choosing_style = op[LifecycleOp.GERMINATE] or op[LifecycleOp.SET_ALPHA_TARGET]
    slot_by_op = torch.tensor(by_op, dtype=torch.bool)

    heads: dict[str, torch.Tensor] = {}
    for name, size in space.sizes().items():
        heads[name] = torch.ones(size, dtype=torch.bool)
    heads["slot"] = torch.tensor(slot, dtype=torch.bool)
    heads["op"] = torch.tensor(op, dtype=torch.bool)
    blueprint = [False] * space.size("blueprint")
    for allowed in topology_blueprints(topology):
        blueprint[int(allowed)] = True
    heads["blueprint"] = torch.tensor(blueprint, dtype=torch.bool)
    if not choosing_style:
        heads["style"] = _one_hot(space.size("style"), GerminationStyle.SIGMOID_ADD)
        heads["alpha_target"] = _one_hot(space.size("alpha_target"), AlphaTargetAction.FULL)
    return ActionMasks({h: heads[h] for h in space.head_names}, slot_by_op)


def _one_hot(size: int, index: int) -> torch.Tensor:
    return torch.tensor([i == index for i in range(size)], dtype=torch.bool)


def compute_batch_masks(
    batch_slot_states: Sequence[Mapping[str, SlotState | None]],
    *,
    total_seeds: Sequence[int] | None = None,
    **kwargs: object,
) -> ActionMasks:
    """Masks for B environments stacked to ``[B, ...]``; keyword arguments as :func:`compute_action_masks`.

    Raises ``ValueError`` on an empty batch or when ``total_seeds`` does not have one entry per env.
    """
    if len(batch_slot_states) == 0:
        raise ValueError("compute_batch_masks needs at least one environment")
    seeds = [0] * len(batch_slot_states) if total_seeds is None else list(total_seeds)
    if len(seeds) != len(batch_slot_states):
        raise ValueError(f"total_seeds has {len(seeds)} entries for {len(batch_slot_states)} environments")
    per_env = [
        compute_action_masks(states, total_seeds=n, **kwargs)  # type: ignore[arg-type]
        for states, n in zip(batch_slot_states, seeds, strict=True)
    ]
    return stack_masks(per_env)


def stack_masks(masks: Sequence[ActionMasks]) -> ActionMasks:
    """Stack single-environment masks into a batch ``[B, ...]``."""
    heads = {h: torch.stack([m.heads[h] for m in masks]) for h in masks[0].heads}
    slot_by_op = None if masks[0].slot_by_op is None else torch.stack([m.slot_by_op for m in masks])  # type: ignore[misc]
    return ActionMasks(heads, slot_by_op)


def check_masks_nonempty(masks: ActionMasks) -> None:
    """Raise ``EmptyMaskError`` naming the head if any row of any head has no valid action."""
    for head, mask in masks.heads.items():
        if not bool(mask.any(dim=-1).all()):
            raise EmptyMaskError(f"action mask for head {head!r} has a row with no valid action")
