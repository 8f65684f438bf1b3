"""Episode variants: the ``digits-varied`` benchmark draws each episode's host from its reset seed.

On the fixed ``digits`` task every episode has the same impaired host, so one open-loop script
(grow a non-linear seed in the first slot as early as allowed) is as good as any policy. Here the
host differs per episode, and which growth pays depends on it (docs/design/benchmark.md has the
measurements):

- **bottleneck**: one of blocks 1 and 2 is a 2-feature bottleneck (4 in a non-linear host);
  only a seed in a slot *before* it can add what the host lacks, so the slot to grow differs;
- **widths** of the two other blocks: block 0 (slot ``r0c0``, always before the bottleneck) is
  8 or 128 features wide (:data:`FIRST_WIDTHS`), the other one is drawn from :data:`WIDTHS`. A
  seed's parameters grow with its slot's width (an ``mlp`` seed has ``8·w²`` of them), so the
  blueprint worth its price differs (an ``mlp`` seed at 8 features costs 0.3 points, at 128
  features 65): in a narrow ``r0c0`` a large seed pays, in a wide one only a small seed is
  affordable, or a narrower slot before the bottleneck;
- **non-linearity**: most hosts have linear blocks, a quarter have ReLU blocks and a 4-wide
  bottleneck (they gain little from any seed, most from a cheap one in ``r0c1``);
- **normalisation**: every block but the bottleneck ends in a LayerNorm. The normalised linear
  blocks are the host's only non-linearity, and a weak one: capacity is what it lacks, so the
  seed that pays is the largest one its slot's width affords (an ``mlp`` seed in a narrow ``r0c0``
  lifts it by about 10 points, an ``attention`` seed in a wide one by about 14). A host without
  these norms made three ``norm`` seeds (a few dozen parameters of normalisation, whatever the
  draw) the best play on nearly every host, so reading the draw did not pay.

The variant is a function of the reset seed alone (a generator of its own, so it does not shift
the episode's other random draws), and the policy sees it only through the observation's episode
block (:data:`esper.tamiyo.contract.EPISODE_FIELDS`): each slot's width and whether the host is
non-linear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from esper.simic.env.config import NUM_HOST_BLOCKS, EnvConfig
from esper.simic.env.hosts import HostPreset, host_preset
from esper.tamiyo.contract import parse_slot_id

#: Widths (features) of block 0 (uniform). Between them, a cheap ``attention`` seed in ``r0c0`` was
#: within a point of every episode's best growth, so the draw is either narrow or wide
#: (docs/design/benchmark.md, first design).
FIRST_WIDTHS: tuple[int, ...] = (8, 128)
#: Widths (features) the other non-bottleneck block is drawn from (uniform).
WIDTHS: tuple[int, ...] = (8, 16, 32, 64, 128)
#: Blocks that can be the bottleneck (block 0 would leave no slot before it).
BOTTLENECK_BLOCKS: tuple[int, ...] = (1, 2)
#: Bottleneck width of a linear host (the fixed impaired host's) and of a non-linear one (ReLU
#: units die, so a 2-wide ReLU bottleneck trains erratically).
LINEAR_BOTTLENECK, NONLINEAR_BOTTLENECK = 2, 4
#: Share of episodes whose host has ReLU blocks.
NONLINEAR_SHARE = 0.25
#: Salt of the variant's generator, so the variant stream differs from any other use of the seed.
_VARIANT_SALT = 0x5EED_0012
#: ``slot_width`` encodes ``log2(width) / WIDTH_SCALE`` (2 → 0.125, 128 → 0.875).
WIDTH_SCALE = 8.0


@dataclass(frozen=True, slots=True)
class EpisodeVariant:
    """The host one episode of a varied task trains (all a policy may learn about it is in :meth:`features`)."""

    bottleneck: int
    """Index of the bottleneck block."""
    preset: HostPreset
    """Widths and activation of the host."""

    @property
    def nonlinear(self) -> bool:
        """The host's blocks have ReLU activations."""
        return self.preset.activation

    def features(self, slot_ids: Sequence[str]) -> dict[str, list[float]]:
        """The observation's episode block by field: ``slot_width`` per slot of ``slot_ids``, ``host_nonlinear``."""
        widths = [self.preset.widths[parse_slot_id(slot_id)[1]] for slot_id in slot_ids]
        return {
            "slot_width": [math.log2(width) / WIDTH_SCALE for width in widths],
            "host_nonlinear": [1.0 if self.nonlinear else 0.0],
        }


def draw_variant(seed: int) -> EpisodeVariant:
    """The variant of the episode reset with ``seed`` (the same seed always gives the same variant)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**64, _VARIANT_SALT]))
    nonlinear = bool(rng.random() < NONLINEAR_SHARE)
    bottleneck = int(rng.choice(BOTTLENECK_BLOCKS))
    widths = [int(rng.choice(FIRST_WIDTHS)), *(int(rng.choice(WIDTHS)) for _ in range(NUM_HOST_BLOCKS - 1))]
    widths[bottleneck] = NONLINEAR_BOTTLENECK if nonlinear else LINEAR_BOTTLENECK
    normalised = tuple(block for block in range(NUM_HOST_BLOCKS) if block != bottleneck)
    return EpisodeVariant(bottleneck, HostPreset(tuple(widths), activation=nonlinear, normalised=normalised))


def episode_preset(config: EnvConfig, seed: int) -> HostPreset:
    """The host preset of the episode reset with ``seed``: drawn for a varied task, the task's preset otherwise
    (:func:`~esper.simic.env.hosts.host_preset`), with as many blocks as the config's slot grid needs."""
    preset = (
        draw_variant(seed).preset
        if config.varies_per_episode
        else host_preset(config.task, config.host, config.impaired)
    )
    return preset.with_blocks(config.num_host_blocks)
