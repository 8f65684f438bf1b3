"""Boundary checks of what a trainer hands a bundle: shapes, dtypes and values, with messages that show them.

Shape checks read tensor metadata only (no host sync); they run before any network code so a
mis-shaped batch fails with a ``ValueError`` naming the tensor instead of a broadcast surprise.
The value checks (:func:`check_blueprint_indices`, :func:`check_rollout_rows`,
:func:`check_finite_logits`) cost one host sync each.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from esper.tamiyo.contract import ActionMasks, ActionSpace, BlueprintAction, EmptyMaskError, Observation
from esper.tamiyo.networks.padded import pad_heads, padded_layout
from esper.tamiyo.policy.protocol import COMPILE_MODES
from esper.tamiyo.policy.results import Hidden


def check_compile_mode(mode: str, *, name: str = "compile mode") -> None:
    """``mode`` is one of ``COMPILE_MODES``; ``name`` is how the message calls it (a kwarg name in the factory)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown {name} {mode!r}; expected one of {list(COMPILE_MODES)}")


def check_observation(obs: Observation, feature_dim: int, num_slots: int, *, sequence: bool) -> tuple[int, ...]:
    """Leading dims of ``obs``: ``(B,)`` for ``[B, F]`` / ``[B, S]``, ``(B, T)`` when ``sequence``."""
    features, indices = obs.features, obs.blueprint_indices
    rank = 3 if sequence else 2
    layout = "[B, T, F]" if sequence else "[B, F]"
    if features.dim() != rank or features.shape[-1] != feature_dim or not features.is_floating_point():
        raise ValueError(
            f"obs.features must be a float {layout} tensor with F={feature_dim}, "
            f"got {features.dtype} {list(features.shape)}"
        )
    if indices.shape != (*features.shape[:-1], num_slots) or indices.is_floating_point():
        raise ValueError(
            f"obs.blueprint_indices must be int {[*features.shape[:-1], num_slots]} to match obs.features, "
            f"got {indices.dtype} {list(indices.shape)}"
        )
    return tuple(features.shape[:-1])


def check_blueprint_indices(indices: torch.Tensor) -> None:
    """Every entry of ``blueprint_indices [...]`` is -1 (empty slot) or a ``BlueprintAction`` value.

    Checked before the embedding lookup: out of range, ``nn.Embedding`` raises an opaque
    ``IndexError`` on CPU and a device-side assert (a dead CUDA context) on GPU.
    """
    bad = (indices < -1) | (indices >= len(BlueprintAction))
    if bool(bad.any()):
        values = sorted(set(indices[bad].tolist()))
        raise ValueError(
            f"obs.blueprint_indices must be -1 (empty slot) or in [0, {len(BlueprintAction)}), got {values[:8]}"
        )


def check_masks(masks: ActionMasks, space: ActionSpace, *, batch_shape: tuple[int, ...], rollout: bool) -> None:
    """Every head's mask is bool ``[*batch_shape, size]``; ``slot_by_op`` present exactly on the rollout leg."""
    if set(masks.heads) != set(space.head_names):
        raise ValueError(f"masks must have exactly the heads {list(space.head_names)}, got {list(masks.heads)}")
    for head, size in space.sizes().items():
        mask = masks.heads[head]
        if mask.dtype != torch.bool or tuple(mask.shape) != (*batch_shape, size):
            raise ValueError(
                f"mask of head {head!r} must be bool {[*batch_shape, size]}, got {mask.dtype} {list(mask.shape)}"
            )
    slot_by_op = masks.slot_by_op
    if not rollout:
        if slot_by_op is not None:
            raise ValueError(
                "evaluate_actions expects the stored op-conditioned slot mask and slot_by_op=None, "
                f"got slot_by_op {list(slot_by_op.shape)}"
            )
        return
    if space.slot_head is None:
        if slot_by_op is not None:
            raise ValueError("slot_by_op was given but the action space has no slot head (slot_head=None)")
        return
    expected = (*batch_shape, space.num_ops, space.size(space.slot_head))
    if slot_by_op is None or slot_by_op.dtype != torch.bool or tuple(slot_by_op.shape) != expected:
        got = None if slot_by_op is None else f"{slot_by_op.dtype} {list(slot_by_op.shape)}"
        raise ValueError(f"get_action needs masks.slot_by_op as bool {list(expected)}, got {got}")


def check_rollout_rows(masks: ActionMasks, space: ActionSpace) -> None:
    """Raise ``EmptyMaskError`` if a head row, or the ``slot_by_op [B, O, S]`` row of a valid op, allows nothing.

    The rollout leg takes the slot from the chosen op's ``slot_by_op`` row, so a valid op without a
    slot would otherwise yield an invalid slot; rows of invalid ops are never used and not checked.
    All heads are checked at once in the padded layout (a dozen ops and one host sync per step,
    not two ops per head).
    """
    op_mask = masks.heads[space.op_head]
    layout = padded_layout(space, op_mask.device)
    padded = pad_heads(layout, [masks.heads[head] for head in space.head_names], False)
    flags = padded.any(dim=-1).flatten(0, -2).all(dim=0)
    names = list(space.head_names)
    if masks.slot_by_op is not None:
        slot_rows = (masks.slot_by_op | ~op_mask.unsqueeze(-1)).any(dim=-1).all()
        flags = torch.cat([flags, slot_rows.view(1)])
        names.append("slot_by_op")
    ok = flags.tolist()
    if all(ok):
        return
    bad = [name for name, fine in zip(names, ok, strict=True) if not fine]
    raise EmptyMaskError(f"action mask for head(s) {bad} has a row with no valid action")


def check_finite_logits(logits: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` if any head's logits hold NaN or infinity (one host sync).

    Sampling is an exponential race, which, unlike ``torch.multinomial``, does not reject NaN
    probabilities: without this check a NaN observation would be acted on silently instead of
    stopping the rollout.
    """
    if bool(torch.isfinite(torch.cat(list(logits.values()), dim=-1)).all()):
        return
    bad = [head for head, values in logits.items() if not bool(torch.isfinite(values).all())]
    raise ValueError(f"the policy produced non-finite logits for head(s) {bad} (NaN or inf in the observation?)")


def check_actions(actions: Mapping[str, torch.Tensor], space: ActionSpace, batch_shape: tuple[int, ...]) -> None:
    """Every head has an integer action tensor of shape ``batch_shape``."""
    for head in space.head_names:
        if head not in actions:
            raise ValueError(f"actions has no entry for head {head!r}; got {list(actions)}")
        action = actions[head]
        if tuple(action.shape) != batch_shape or action.is_floating_point() or action.dtype == torch.bool:
            raise ValueError(
                f"actions[{head!r}] must be an integer tensor of shape {list(batch_shape)}, "
                f"got {action.dtype} {list(action.shape)}"
            )


def check_hidden(hidden: Hidden, hidden_dim: int, batch_size: int) -> None:
    """``hidden`` is None, or (recurrent bundles only) a tuple of ``[layers, B, hidden_dim]`` tensors."""
    if hidden is None:
        return
    if hidden_dim == 0:
        raise ValueError("this policy is feed-forward: pass hidden=None")
    for tensor in hidden:
        if tensor.dim() != 3 or tensor.shape[1] != batch_size or tensor.shape[2] != hidden_dim:
            raise ValueError(
                f"hidden tensors must be [layers, {batch_size}, {hidden_dim}], got {[list(t.shape) for t in hidden]}"
            )
