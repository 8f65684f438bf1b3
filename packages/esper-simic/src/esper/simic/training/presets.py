"""Presets: named bundles of environment and PPO settings (``esper-train ppo --preset NAME``).

A preset is one more config layer: plain nested data in the shape of a config file, so it goes
through the same validation (:func:`~esper.simic.training.config.build_config`) and fails with the
same messages. It sits under everything the user gives: preset < config file < flags. A run
records the resolved config, never the preset's name, and a resumed run takes its checkpoint's
config without applying the preset again, so a flag given on the first run stays and a preset
changed later never changes an existing run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


class PresetError(ValueError):
    """An unknown preset name."""


@dataclass(frozen=True, slots=True)
class Preset:
    """A named config layer and the one line that says what it is for."""

    name: str
    """Name given to ``--preset``."""
    summary: str
    """One line for ``esper-train presets``."""
    settings: Mapping[str, Any]
    """The layer itself, nested like a config file (``{"env": {"host": "cnn"}}``)."""

    def layer(self) -> dict[str, Any]:
        """A fresh copy of :attr:`settings`, to merge under the config file and the flags."""
        return copy.deepcopy(dict(self.settings))

    def setting_lines(self) -> list[str]:
        """Each setting as ``dotted.path = value`` (the value as JSON/TOML writes it)."""
        return [f"{path} = {json.dumps(value)}" for path, value in _leaves(self.settings, "")]


def _leaves(settings: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    leaves: list[tuple[str, Any]] = []
    for key, value in settings.items():
        path = f"{prefix}{key}"
        leaves += _leaves(value, f"{path}.") if isinstance(value, Mapping) else [(path, value)]
    return leaves


DIGITS_VARIED = Preset(
    "digits-varied",
    "the benchmark: bundled 8x8 digits, each episode drawing its own impaired MLP host (the built-in defaults)",
    {"env": {"task": "digits-varied", "host": "mlp"}},
)
"""The default world, spelled out: it names the defaults' task and host and changes no number, so
``--preset digits-varied`` and no preset train bit for bit the same run."""

BENCHMARK = Preset(
    "benchmark",
    "the digits-varied benchmark with the PPO settings its studies were measured with, pinned (lr 1e-3, "
    "4 minibatches, per-head normalisation; today also the defaults)",
    {
        "env": {"task": "digits-varied", "host": "mlp"},
        "ppo": {"learning_rate": 1e-3, "num_minibatches": 4, "per_head_normalisation": True},
    },
)
"""What the benchmark's learning needs, measured on it (docs/design/benchmark.md, "Learning it"):
at the default PPO settings an update moves the policy by an approx-KL of about 1e-4 (a hundredth
of ``target_kl``), so after 50 rounds the greedy policy still plays no growth; four minibatches of
one environment each at lr 1e-3 take 16 larger steps per update (approx-KL 0.005-0.01, the early
stop now and then), and per-head normalisation lets the slot and blueprint heads, which matter on
the few germination steps, learn against their entropy bonus. These became the defaults when the
first run was measured learning nothing at the earlier ones (lr 3e-4, one minibatch, joint
normalisation); the preset pins them, so a study stays comparable if the defaults move again. With
fewer than 4 environments each is its own minibatch."""

DIGITS_MLP = Preset(
    "digits-mlp",
    "bundled 8x8 digits on one fixed impaired MLP host (the task before the benchmark; about 3 s a round)",
    {"env": {"task": "digits", "host": "mlp"}},
)
"""The fixed-host task: every episode trains the same impaired MLP, so one open-loop script is as good
as any controller (docs/design/benchmark.md). Kept for comparison with earlier runs and as the cheap
sanity check that a trainer learns at all."""

DIGITS_CNN = Preset(
    "digits-cnn",
    "bundled 8x8 digits on the impaired CNN host (1x1 kernels: seeds must supply the spatial context)",
    {"env": {"task": "digits", "host": "cnn"}},
)
"""The second topology on the same small task: the impaired CNN has no spatial receptive field
before its global pool, and a conv_heavy seed at ``r0c1`` lifts it from about 18-29 % to 57-78 % (the
measurements in :mod:`esper.simic.env.hosts`), so growth has a clear payoff. Everything else keeps
the defaults, so its runs compare directly with ``digits-mlp``'s."""

CIFAR10_CNN = Preset(
    "cifar10-cnn",
    "CIFAR-10 on the CNN host (needs --data-dir: the CIFAR-10 python batches, never downloaded)",
    {"env": {"task": "cifar10", "host": "cnn", "impaired": False}},
)
"""The reference's workload: a CNN host on CIFAR-10, trained as the field trains it. The data is
not shipped, so ``--data-dir`` stays the user's (without it the config refuses the task in one
line). The host is the field-sized CIFAR CNN (32/64/128 channels, 3×3 kernels, 95k parameters:
``TASK_HOST_PRESETS``) with crop-and-flip augmentation on, not the 1×1-kernel impaired CNN that
the other tasks default to (``--impaired`` brings that back for a cheap CPU run); the optimiser
keeps the default host lr 0.02 (docs/design/reference-numbers.md)."""

TEXT_TRANSFORMER = Preset(
    "text-transformer",
    "next-byte prediction with the transformer host on the generated corpus (no download; ~1 min a round)",
    {"env": {"task": "text", "host": "transformer", "host_training": {"lr": 0.1}, "text": {"train_windows": 512}}},
)
"""The language-model workload. At the image tasks' host lr 0.02 the transformer is still learning
byte statistics after 40 epochs of 200 windows (27-29 % next-byte accuracy), so context, which
seeds supply, barely matters; at lr 0.1 with 512 training windows an epoch the host alone reaches
39 % (normal) and 35 % (impaired; :mod:`esper.simic.env.hosts`), so an attention seed has
something to add. A round (4 episodes of 40 epochs) takes about a minute of one CPU core
(measured: about 60 s of CPU time)."""

#: Every preset by name, in the order ``esper-train presets`` lists them.
PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        preset.name: preset
        for preset in (DIGITS_VARIED, BENCHMARK, DIGITS_MLP, DIGITS_CNN, CIFAR10_CNN, TEXT_TRANSFORMER)
    }
)
#: The preset that matches the built-in defaults (what a run without ``--preset`` is).
DEFAULT_PRESET = DIGITS_VARIED.name


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        PresetError: no such preset (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
