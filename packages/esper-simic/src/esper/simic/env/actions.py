"""From a factored action to a lifecycle operation on the model.

An action is ``{head: index}`` over the contract's action space. :func:`parse_action` rejects a
malformed one (missing or unknown head, index out of range: a caller bug, so it raises).
:func:`action_allowed` checks it against the masks: the op must be valid, its slot valid for
that op, and every head relevant to the op valid (irrelevant heads are ignored).
:func:`execute_action` applies an allowed action; it reports failure when a gate refuses
(ADVANCE before the gate opens, FOSSILIZE before a contribution was measured), and the
environment then treats the step as a WAIT.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from esper.simic.env.model import MorphogeneticModel
from esper.tamiyo.contract import (
    ALPHA_CURVES,
    ALPHA_SPEED_TICKS,
    ALPHA_TARGET_VALUES,
    TEMPO_EPOCHS,
    ActionMasks,
    ActionSpace,
    LifecycleOp,
)


def parse_action(action: Mapping[str, object], space: ActionSpace) -> dict[str, int]:
    """``{head: int}`` for every head of ``space``; ``ValueError``/``TypeError`` naming the bad head otherwise."""
    unknown = set(action) - set(space.head_names)
    if unknown:
        raise ValueError(f"unknown action heads {sorted(unknown)}; expected {list(space.head_names)}")
    parsed: dict[str, int] = {}
    for head, size in space.sizes().items():
        if head not in action:
            raise ValueError(f"action lacks head {head!r}; expected all of {list(space.head_names)}")
        value = action[head]
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"action head {head!r} must be a single index, got a tensor of shape {tuple(value.shape)}"
                )
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"action head {head!r} must be an int, got {value!r}")
        if not 0 <= value < size:
            raise ValueError(f"action head {head!r} = {value} is outside [0, {size})")
        parsed[head] = value
    return parsed


def action_allowed(action: Mapping[str, int], masks: ActionMasks, space: ActionSpace) -> bool:
    """Whether the op, its slot and every head relevant to the op are allowed by ``masks`` (single env)."""
    op = action[space.op_head]
    if not bool(masks.heads[space.op_head][op]):
        return False
    for head in space.head_names:
        if head == space.op_head or not space.is_relevant(op, head):
            continue
        if head == space.slot_head and masks.slot_by_op is not None:
            if not bool(masks.slot_by_op[op, action[head]]):
                return False
        elif not bool(masks.heads[head][action[head]]):
            return False
    return True


def execute_action(
    action: Mapping[str, int],
    model: MorphogeneticModel,
    slot_ids: tuple[str, ...],
    generator: torch.Generator,
    accuracy: float,
) -> bool:
    """Apply an allowed action; returns False when a gate refused it (nothing changed then).

    ``accuracy`` (percent) is the latest validation accuracy, recorded at germination.
    """
    op = LifecycleOp(action["op"])
    if op == LifecycleOp.WAIT:
        return True
    slot = model.slot(slot_ids[action["slot"]])
    curve, steepness = ALPHA_CURVES[action["alpha_curve"]]
    if op == LifecycleOp.GERMINATE:
        slot.germinate(
            action["blueprint"],
            action["style"],
            TEMPO_EPOCHS[action["tempo"]],
            ALPHA_TARGET_VALUES[action["alpha_target"]],
            generator,
            accuracy,
        )
        return True
    if op == LifecycleOp.SET_ALPHA_TARGET:
        target = ALPHA_TARGET_VALUES[action["alpha_target"]]
        slot.set_alpha_target(
            target, ALPHA_SPEED_TICKS[action["alpha_speed"]], curve, steepness, action["style"], generator
        )
        return True
    if op == LifecycleOp.PRUNE:
        slot.prune(ALPHA_SPEED_TICKS[action["alpha_speed"]], curve, steepness)
        return True
    if op == LifecycleOp.FOSSILIZE:
        return slot.fossilize()
    return slot.advance()
