"""``TrainConfig``: the one frozen object that configures a training run (and documents its CLI).

Every field has a default and a docstring; the docstring's first paragraph is the ``--help``
text of the matching ``esper-train`` option. Nested ``env`` (:class:`EnvConfig`, itself with
sections such as ``env.governor``) and ``ppo`` (:class:`PPOConfig`) sections are the environment's
and the agent's own configs. Values can come from a TOML or JSON file (nested tables such as
``[env.governor]``; unknown keys rejected by their dotted path), from CLI flags, or from Python; they are
layered by :func:`build_config` (later layers win) and validated once, in ``__post_init__``.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from esper.simic.agent import PPOConfig
from esper.simic.checks import check_int
from esper.simic.env import EnvConfig
from esper.simic.env.engines import ENGINE_NAMES, EngineName
from esper.simic.training.dataclass_io import from_plain, to_plain
from esper.tamiyo.policy import COMPILE_MODES

DEFAULT_ROUNDS = 150
"""Rounds when neither ``rounds`` nor ``episodes`` is given: 600 benchmark episodes on 4 envs, about
ten minutes of one CPU core (about 4 s a round on the machine the defaults were measured on). The
earlier 40 did not beat doing nothing: the greedy policy scored 80.35 against no growth's 81.44 on
held-out episodes (docs/design/defaults.md)."""

CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]

MAX_NUM_ENVS = 4096
"""Most environments in lockstep (training and evaluation): 512x the benchmark's 8. Every env holds its own
host, seeds, optimisers and rollout rows and trains its host on each step, so far fewer are already
impractical; 10,000,000 crashed allocating the per-env state."""
MAX_NUM_THREADS = 1024
"""Most torch CPU threads: more than the hardware threads of any current machine; torch starts one OS thread
each (100,000 crash the process with a segfault)."""

#: Device types a run or an evaluation can use. Every other type torch parses is refused by name:
#: ``meta`` tensors have no data (the first ``.item()`` fails deep in a round), and ``xla``, ``hpu``
#: and the like need a torch built for them, and code paths (synchronisation, RNG state) Esper does not have.
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")

#: Fields that may differ between a checkpoint's run and the run that resumes it; every other
#: field must match, or the resumed run would not continue the same experiment.
RESUME_OVERRIDABLE: frozenset[str] = frozenset(
    {
        "rounds",
        "episodes",
        "out_dir",
        "checkpoint_every",
        "keep_checkpoints",
        "trace_every",
        "device",
        "compile_mode",
        "dist_timeout_s",
    }
)


class ConfigFileError(ValueError):
    """A config file is missing, unreadable or not valid TOML/JSON."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """A PPO training run: which policy, how many rounds of how many lockstep episodes, where to write."""

    policy: str = "lstm"
    """Registered policy to train (`esper-train policies` lists them, plugins included)."""
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor options of the policy as a JSON object, e.g. '{"lstm_hidden": 64}' (the built-in lstm and
    mlp take hidden_size and lstm_hidden up to 8192: MAX_NETWORK_WIDTH)."""
    num_envs: int = 4
    """Environments run in lockstep; each round trains on num_envs fresh episodes (at most 4096: MAX_NUM_ENVS)."""
    rounds: int | None = None
    """Training rounds (one PPO update each); give rounds or episodes. Neither: 150 rounds."""
    episodes: int | None = None
    """Total training episodes; sets rounds = ceil(episodes / num_envs)."""
    seed: int = 42
    """Run seed: policy initialisation, action sampling and every environment's seed derive from it."""
    device: str = "cpu"
    """Torch device of the whole run ("cpu", "cuda" = "cuda:0", "cuda:1", "mps"; other device types such as
    "meta" or "xla" are refused): the policy, the rollout buffer and every environment's host, seeds,
    optimisers and task data (resident there: no per-batch copies)."""
    num_threads: int | None = 1
    """torch CPU threads during the run (None: torch's default; at most 1024: MAX_NUM_THREADS). One is fastest
    for the default small hosts (2.6 s vs 3.1 s per round with 16) and avoids oversubscription; raise it for
    cnn/cifar10."""
    compile_mode: CompileMode = "off"
    """torch.compile mode for the policy network ("off" disables compilation)."""
    engine: EngineName = "auto"
    """How the environments' host epochs train: "loop" one after another, "batched" hosts of one shape (and
    seeds of one blueprint in one slot) as one stacked computation, "auto" batched from 2 environments on for
    mlp and cnn hosts. The engines agree to float rounding; a run resumes bit for bit only with its engine."""
    checkpoint_every: int = 10
    """Write checkpoint_last.pt every this many rounds (0: only at the end of the run)."""
    keep_checkpoints: bool = False
    """Also keep a numbered checkpoint_round_XXXX.pt at every periodic checkpoint."""
    trace_every: int = 0
    """Every this many rounds, play one extra greedy episode of the current policy on a fixed held-out seed
    and write its step-by-step trace (the format of eval's traces.jsonl, plus the round) to
    traces/round_XXXX.jsonl in the run directory (0: never; no run directory: nothing is written). Training is
    unchanged: the episode has its own env and the global random generators are restored after it."""
    dist_timeout_s: float = 300.0
    """Seconds a multi-process run (torchrun) waits for its rendezvous or any collective before it
    fails: a dead peer ends the job with an error instead of a hang."""
    out_dir: str | None = None
    """Run directory (resolved config, metrics.jsonl, checkpoints, summary.json). esper-train defaults to
    runs/ppo-DATE-TIME; from Python, None writes nothing."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Environment settings (task, host, episode length, reward mode, slots, ...)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO hyperparameters (learning rate, clip ratio, epochs, entropy coefficients, ...). Its gamma
    is also the environment's reward discount (the return telescopes to the objective under it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_kwargs", dict(self.policy_kwargs))
        if not isinstance(self.policy, str) or not self.policy:
            raise ValueError(f"policy must be a registered policy name, got {self.policy!r}")
        check_sizes(self.num_envs, self.num_threads)
        if self.rounds is not None and self.episodes is not None:
            raise ValueError(f"give rounds ({self.rounds}) or episodes ({self.episodes}), not both")
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        _check_dist_timeout(self.dist_timeout_s)
        _check_periods(self.checkpoint_every, self.trace_every)
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile_mode {self.compile_mode!r}; expected one of {list(COMPILE_MODES)}")
        check_device(self.device)
        if self.engine not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of {list(ENGINE_NAMES)}")
        try:
            json.dumps(self.policy_kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"policy_kwargs must be JSON-serialisable, got {self.policy_kwargs!r}") from exc

    @property
    def total_rounds(self) -> int:
        """Rounds the run stops after: ``rounds``, else ``ceil(episodes / num_envs)``, else the default."""
        if self.rounds is not None:
            return self.rounds
        if self.episodes is not None:
            return math.ceil(self.episodes / self.num_envs)
        return DEFAULT_ROUNDS

    @property
    def total_episodes(self) -> int:
        """Episodes the run trains on (``total_rounds * num_envs``; may round ``episodes`` up)."""
        return self.total_rounds * self.num_envs

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON/TOML data (nested ``env`` and ``ppo`` tables)."""
        return to_plain(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ``ConfigKeyError``."""
        return from_plain(cls, data)


def _check_periods(checkpoint_every: int, trace_every: int) -> None:
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0 = only at the end), got {checkpoint_every}")
    if trace_every < 0:
        raise ValueError(f"trace_every must be >= 0 (0 = no traces), got {trace_every}")


def check_sizes(num_envs: int, num_threads: int | None) -> None:
    """``1 <= num_envs <= MAX_NUM_ENVS`` and ``num_threads`` None or in ``[1, MAX_NUM_THREADS]`` (training and eval)."""
    check_int("num_envs", num_envs, 1, MAX_NUM_ENVS)
    if num_threads is not None and not 1 <= num_threads <= MAX_NUM_THREADS:
        bound = ">= 1" if num_threads < 1 else f"<= {MAX_NUM_THREADS}"
        raise ValueError(f"num_threads must be {bound} or None, got {num_threads}")


def _check_dist_timeout(seconds: float) -> None:
    if seconds <= 0:
        raise ValueError(f"dist_timeout_s must be > 0, got {seconds}")


def check_device(device: str) -> torch.device:
    """``torch.device(device)`` if its type is one of :data:`DEVICE_TYPES` (availability is checked when
    the run starts: :func:`~esper.simic.training.vectorized.resolve_device`).

    Raises:
        ValueError: ``device`` is not a device name, or names a type the trainer cannot run on.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r} (expected e.g. 'cpu', 'cuda', 'cuda:1')") from exc
    if parsed.type not in DEVICE_TYPES:
        raise ValueError(f"device {device!r} cannot run Esper (supported: cpu, cuda, cuda:N, mps)")
    return parsed


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.toml`` or ``.json`` config file into nested plain data (not yet validated).

    Raises:
        ConfigFileError: missing file, unknown extension or a parse error (with its location).
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigFileError(f"config file {str(file)!r} does not exist")
    suffix = file.suffix.lower()
    try:
        if suffix == ".toml":
            with file.open("rb") as handle:
                data: Any = tomllib.load(handle)
        elif suffix == ".json":
            data = json.loads(file.read_text(encoding="utf-8"))
        else:
            raise ConfigFileError(f"config file {str(file)!r} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"config file {str(file)!r} is not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {str(file)!r} must contain a table/object at the top level")
    return data


#: Keys of which only the one given last counts (a later layer's choice replaces an earlier one's).
_EXCLUSIVE_GROUPS: tuple[frozenset[str], ...] = (frozenset({"rounds", "episodes"}),)


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge plain config mappings; later layers win, nested tables merge key by key.

    Setting ``episodes`` in a layer clears ``rounds`` from earlier layers and vice versa, so a CLI
    ``--episodes`` overrides a file's ``rounds``.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for group in _EXCLUSIVE_GROUPS:
            if group & {k for k, v in layer.items() if v is not None}:
                for key in group:
                    merged.pop(key, None)
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = merge_layers(merged[key], value)
            else:
                merged[key] = value
    return merged


def build_config(*layers: Mapping[str, Any]) -> TrainConfig:
    """``TrainConfig`` from plain layers (e.g. checkpoint config, file, CLI flags), later ones winning."""
    return TrainConfig.from_dict(merge_layers(*layers))
