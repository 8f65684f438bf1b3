"""Whether a configuration continues the run that wrote a saved one, and what differs if not.

A resumed run must be the same experiment: only
:data:`~esper.simic.training.config.RESUME_OVERRIDABLE` fields (length of the run, output,
checkpointing, device, compilation) may change. Differences are compared leaf by leaf and named by
dotted path (``env.host_lr``), so a refusal points at the field instead of dumping whole tables.
Two overridable fields change the arithmetic (:data:`NOT_BIT_IDENTICAL`): a resume that changes
them is allowed, with a caveat that the continuation is no longer bit-identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from esper.simic.training.checkpoint import CheckpointError
from esper.simic.training.config import RESUME_OVERRIDABLE, TrainConfig

NOT_BIT_IDENTICAL: tuple[str, ...] = ("device", "compile_mode")
"""Overridable fields whose change alters float results: another device type runs other kernels,
and ``torch.compile`` fuses operations and reorders reductions. Allowed on resume (moving a run to
a GPU machine is legitimate), announced by :func:`resume_caveats`."""

MAX_SHOWN = 5
"""Differences spelled out in one message; the rest are counted."""


class _Absent:
    """Marks a field one side does not have."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted path, saved value, current value)`` of every differing leaf, sorted by path.

    Nested tables are compared key by key; anything else (numbers, strings, lists) is a leaf.
    Fields under a :data:`RESUME_OVERRIDABLE` top-level key are skipped. A key only one side has
    shows :data:`ABSENT` on the other.
    """
    before, after = _leaves(saved), _leaves(current)
    paths = sorted(path for path in before.keys() | after.keys() if path.split(".")[0] not in RESUME_OVERRIDABLE)
    found = [(path, before.get(path, ABSENT), after.get(path, ABSENT)) for path in paths]
    return [(path, old, new) for path, old, new in found if old != new]


def describe_differences(differences: list[tuple[str, Any, Any]], *, saved_name: str) -> str:
    """``env.host_lr: checkpoint 0.02 vs now 0.05; seed: ...`` for at most :data:`MAX_SHOWN`, then a count."""
    shown = "; ".join(f"{path}: {saved_name} {old!r} vs now {new!r}" for path, old, new in differences[:MAX_SHOWN])
    hidden = len(differences) - MAX_SHOWN
    return shown + (f"; and {hidden} more" if hidden > 0 else "")


def check_resume_config(saved: Mapping[str, Any], config: TrainConfig) -> None:
    """Raise :class:`CheckpointError` unless ``config`` continues the run that wrote ``saved``."""
    differences = config_differences(saved, config.to_dict())
    if differences:
        raise CheckpointError(
            f"cannot resume: the config differs from the checkpoint's "
            f"({describe_differences(differences, saved_name='checkpoint')}); "
            f"only {', '.join(sorted(RESUME_OVERRIDABLE))} may change"
        )


def resume_caveats(saved: Mapping[str, Any], config: TrainConfig) -> list[str]:
    """One notice per :data:`NOT_BIT_IDENTICAL` field this resume changes (device by type: cuda:0 = cuda)."""
    current = config.to_dict()
    notices = []
    for key in NOT_BIT_IDENTICAL:
        old, new = saved.get(key), current.get(key)
        if _changes_arithmetic(key, old, new):
            notices.append(
                f"resuming with {key} {new!r} where the checkpoint's run used {old!r}: the continuation "
                "is not bit-identical to an uninterrupted run"
            )
    return notices


def _changes_arithmetic(key: str, old: Any, new: Any) -> bool:
    if key == "device" and isinstance(old, str) and isinstance(new, str):
        return torch.device(old).type != torch.device(new).type
    return bool(old != new)


def _leaves(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            leaves.update(_leaves(value, f"{path}."))
        else:
            leaves[path] = value
    return leaves
