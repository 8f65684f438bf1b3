"""Versioned training checkpoints: atomic writes, safe loads, one clear error for every mismatch.

A checkpoint is a plain dict of tensors, primitives, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs). Layout (``FORMAT_VERSION`` 2; version 1
held the flat environment config)::

    format_version   int
    policy           {"type", "config", "slot_ids", "head_names", "head_sizes", "feature_dim"}
    policy_state     the bundle's state dict (no compile prefix)
    agent_state      PPOAgent.state_dict() (optimiser, value normaliser, counters)
    normalizers      {"obs": ..., "reward": ...} state dicts
    counters         {"rounds_completed", "episodes_completed", "env_steps"}
    rng              see :func:`esper.simic.training.rng.capture_rng_state`
    config           TrainConfig.to_dict() of the run

The policy is rebuilt from ``policy.type`` + ``policy.config`` through the registry, so a plugin
policy resumes as long as its distribution is installed. No backward compatibility: any other
version fails fast.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import shlex
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from esper.simic.training.atomic import write_atomic
from esper.tamiyo.contract import ActionSpace, SlotConfig
from esper.tamiyo.policy import PolicyBundle, PolicyRegistryError, create_policy, get_policy_class

FORMAT_VERSION = 2
"""Bumped on any incompatible change of the layout above."""

LAST_CHECKPOINT = "checkpoint_last.pt"
"""File name of the rolling checkpoint in a run directory."""

REQUIRED_KEYS: tuple[str, ...] = (
    "format_version",
    "policy",
    "policy_state",
    "agent_state",
    "normalizers",
    "counters",
    "rng",
    "config",
)
POLICY_KEYS: tuple[str, ...] = ("type", "config", "slot_ids", "head_names", "head_sizes", "feature_dim")


class CheckpointError(Exception):
    """A checkpoint cannot be used: unreadable, wrong version, or incompatible with the run. One line."""


def round_checkpoint_name(round_index: int) -> str:
    """File name of the numbered checkpoint written after ``round_index`` rounds."""
    return f"checkpoint_round_{round_index:04d}.pt"


def encode_checkpoint(checkpoint: Mapping[str, Any]) -> bytes:
    """Serialise ``checkpoint`` in memory (the expensive part of saving; no file is touched)."""
    buffer = io.BytesIO()
    torch.save(dict(checkpoint), buffer)
    return buffer.getvalue()


def write_checkpoint(path: Path, checkpoint: Mapping[str, Any] | bytes) -> None:
    """Save ``checkpoint`` (a dict, or bytes from :func:`encode_checkpoint`) atomically.

    A temporary file in the same directory, fsync, then ``os.replace``
    (:func:`~esper.simic.training.atomic.write_atomic`): a crash mid-write leaves the previous file
    intact, and readers never see a partial checkpoint. The file gets the umask's mode, like the
    run's other files.

    Raises:
        CheckpointError: the file cannot be written (full disk, no permission), naming it; no
            temporary file is left behind.
    """
    payload = checkpoint if isinstance(checkpoint, bytes) else encode_checkpoint(checkpoint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, payload)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {str(path)!r}: {exc.strerror or exc}") from exc


#: Where torch's weights-only unpickler states what it refused, in the wordings torch has used: after
#: a ``WeightsUnpickler error:`` marker, or on its own for a blocked module (torch >= 2.6).
_UNPICKLER_FINDINGS = (
    re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)"),
    re.compile(r"(Trying to load unsupported GLOBAL [^\n]*)"),
    re.compile(r"(Unsupported (?:global|operand)[^\n]*)"),
)
#: Text that must never reach the user: torch's advice to load the file unsafely.
_UNSAFE_ADVICE = re.compile(r"weights_only|weights only|unsafe|trust|safe_globals", re.IGNORECASE)
_REFUSED = "it holds Python objects other than tensors and plain data, which are never loaded"


def _load_failure(exc: BaseException) -> str:
    """One short line saying why ``torch.load`` failed, never advising to load the file unsafely.

    A refused weights-only load comes with paragraphs advising ``weights_only=False``, advice a
    user must not follow for a file that is not an Esper checkpoint (it may run code). Only the
    unpickler's own finding (e.g. ``Unsupported operand 59``) is kept when it can be recognised;
    otherwise a fixed phrase stands in for whatever torch said.
    """
    text = str(exc)
    match = next((found for pattern in _UNPICKLER_FINDINGS if (found := pattern.search(text))), None)
    if match is not None:
        finding = match.group(1).split(". ")[0].strip().rstrip(".")
    else:
        lines = text.strip().splitlines()
        finding = lines[0] if lines else type(exc).__name__
    return _REFUSED if _UNSAFE_ADVICE.search(finding) else finding


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and structurally validate a checkpoint on CPU.

    Raises:
        CheckpointError: missing or unreadable file (or a directory), not a checkpoint, other version,
            missing keys, or a section that is not a table.
    """
    file = Path(path)
    if file.is_dir():
        example = str(file / LAST_CHECKPOINT)
        raise CheckpointError(f"checkpoint {str(file)!r} is a directory; pass a checkpoint file such as {example!r}")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {str(file)!r} does not exist")
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        reason = _load_failure(exc)
        raise CheckpointError(f"checkpoint {str(file)!r} is corrupt or not a checkpoint ({reason})") from exc
    if not isinstance(data, dict) or "format_version" not in data:
        raise CheckpointError(f"{str(file)!r} is not an Esper training checkpoint (no format_version)")
    if data["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(file)!r} has format version {data['format_version']!r}, this Esper reads "
            f"version {FORMAT_VERSION}; retrain or use the Esper version that wrote it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    missing += [f"policy.{k}" for k in POLICY_KEYS if isinstance(data.get("policy"), dict) and k not in data["policy"]]
    if missing:
        raise CheckpointError(f"checkpoint {str(file)!r} is incomplete: missing {missing}")
    not_tables = [k for k in REQUIRED_KEYS if k != "format_version" and not isinstance(data[k], dict)]
    if not_tables:
        raise CheckpointError(f"checkpoint {str(file)!r} is malformed: {not_tables} must be tables")
    return data


#: Tasks whose data is bundled or generated: they never read ``env.data_dir``. Every other task reads it
#: (``cifar10``'s pickle batches, ``text``'s corpus when one is named).
_TASKS_WITHOUT_FILES = ("digits", "digits-varied", "synthetic")


def confirm_data_dir(
    saved_config: Mapping[str, Any], data_dir: str | None, *, checkpoint: str | os.PathLike[str]
) -> str | None:
    """The data path to run a checkpoint's environment on: the user's ``data_dir``, never one the checkpoint names.

    A checkpoint loads safely (no code runs), but its config is whatever the file says, and a path it
    names may hold files crafted by whoever wrote it (CIFAR-10 batches are pickles). So ``eval`` and
    ``--resume`` read data only from a path the user gives. Returns ``data_dir`` when given, else None
    (the checkpoint's task reads no files; ``saved_config`` is its ``TrainConfig.to_dict()``).

    Raises:
        CheckpointError: ``data_dir`` is None and the checkpoint's task reads files from a path it
            names (one line, showing the path and the ``--data-dir`` that confirms it).
    """
    if data_dir is not None:
        return data_dir
    env = saved_config.get("env")
    if not isinstance(env, Mapping) or env.get("data_dir") is None or env.get("task") in _TASKS_WITHOUT_FILES:
        return None
    named = str(env["data_dir"])
    raise CheckpointError(
        f"checkpoint {str(checkpoint)!r} reads its {env.get('task')} data from {named!r}, a path only the "
        f"checkpoint names; it is not read unless you name it: pass --data-dir {shlex.quote(named)} to confirm it"
    )


def policy_header(policy_type: str, policy: PolicyBundle) -> dict[str, Any]:
    """What a checkpoint records to rebuild and check ``policy`` (all primitives)."""
    space = policy.action_space
    return {
        "type": policy_type,
        "config": dict(policy.policy_config),
        "slot_ids": list(policy.slot_config.slot_ids),
        "head_names": list(space.head_names),
        "head_sizes": list(space.head_sizes),
        "feature_dim": int(policy.feature_dim),
    }


def check_compatible(
    header: Mapping[str, Any], *, slot_config: SlotConfig, action_space: ActionSpace, feature_dim: int
) -> None:
    """Raise :class:`CheckpointError` if the checkpoint's policy does not fit the environment.

    Checked before any policy is built, in this order: slot ids (order matters: it is the slot
    head's order), action space head names and sizes, observation feature size.
    """
    if list(header["slot_ids"]) != list(slot_config.slot_ids):
        saved, expected = list(header["slot_ids"]), list(slot_config.slot_ids)
        raise CheckpointError(f"checkpoint slot ids {saved} do not match the environment's {expected}")
    saved_space = dict(zip(header["head_names"], header["head_sizes"], strict=False))
    if saved_space != action_space.sizes() or list(header["head_names"]) != list(action_space.head_names):
        raise CheckpointError(
            f"checkpoint action space {saved_space} does not match the environment's {action_space.sizes()}"
        )
    if int(header["feature_dim"]) != feature_dim:
        raise CheckpointError(
            f"checkpoint feature size {header['feature_dim']} does not match the environment's {feature_dim}"
        )


def rebuild_policy(
    header: Mapping[str, Any], state: Mapping[str, Any], *, device: torch.device | str, compile_mode: str
) -> PolicyBundle:
    """Build the checkpoint's policy through the registry, load its weights, then compile.

    Raises:
        CheckpointError: unknown or broken policy type, or weights that do not fit the architecture.
    """
    policy_type = str(header["type"])
    try:
        get_policy_class(policy_type)
    except PolicyRegistryError as exc:
        raise CheckpointError(f"checkpoint policy type {policy_type!r} is not available: {_first_line(exc)}") from exc
    slot_config = SlotConfig(tuple(header["slot_ids"]))
    try:
        policy = create_policy(
            policy_type,
            slot_config=slot_config,
            feature_dim=int(header["feature_dim"]),
            device="cpu",
            compile_mode="off",
            **dict(header["config"]),
        )
        policy.load_state_dict(dict(state), strict=True)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint weights do not fit policy {policy_type!r}: {_first_line(exc)}") from exc
    return policy.to(device).compile(compile_mode)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
