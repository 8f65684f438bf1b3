"""Host engines: how a :class:`~esper.simic.env.VectorEnv` trains its environments' host epochs.

Every step, each active environment executes its action and ticks its lifecycle
(``MorphogeneticEnv.begin_step``); the engine then trains all their epochs; each environment
validates, runs its governor and observes (``finish_step``). Engines differ only in how the epochs
train, never in what they compute (up to float rounding):

- ``loop``: one environment after another (``host_epoch.train_epoch``).
- ``batched``: environments whose hosts have the same shape (equal ``host_key``) run stacked
  (``stacked_epoch.StackedPart``), seeds of the same blueprint in the same slot stacked too; an
  environment alone in its shape runs its own model. Either way every minibatch of every
  environment shares one backward and one fused update (``host_epoch.train_parts``). On fixed-host
  tasks every environment is in one group; on ``digits-varied`` the hosts of one drawn shape.
- ``auto`` (the default): ``batched`` for the hosts where stacking pays (:data:`AUTO_BATCHED_TOPOLOGIES`)
  when there are at least :data:`AUTO_BATCHED_MIN_ENVS` environments, else ``loop``. The
  transformer host on text is arithmetic-bound (its 256-token vocabulary head and attention
  dominate), and its batched products ran 0.84–0.90× the loop's speed at 4–16 environments.

Per-environment random streams (minibatch order, augmentation, seed initialisation) are the same
in both engines, so an environment's episode differs between engines only by float rounding
(batched matrix products sum in another order). Within one engine, the same seeds give the same
numbers on the same machine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from esper.simic.env.host_epoch import EpochPart, EpochStats, SinglePart, train_epoch, train_parts
from esper.simic.env.stacked_epoch import StackedPart

if TYPE_CHECKING:
    from esper.simic.env.morphogenetic import MorphogeneticEnv

EngineName = Literal["auto", "loop", "batched"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)
#: ``auto`` batches from this many environments on (measured: ``scripts/bench_env.py``).
AUTO_BATCHED_MIN_ENVS = 2
#: Host topologies ``auto`` batches (module docstring).
AUTO_BATCHED_TOPOLOGIES: frozenset[str] = frozenset({"mlp", "cnn"})


class HostEngine(Protocol):
    """Trains one host epoch of each environment (each after its ``begin_step``)."""

    name: str

    def train(self, envs: Sequence[MorphogeneticEnv]) -> list[EpochStats]:
        """The epoch statistics of ``envs``, in order."""
        ...


class LoopEngine:
    """One environment after another."""

    name = "loop"

    def train(self, envs: Sequence[MorphogeneticEnv]) -> list[EpochStats]:
        return [train_epoch(env.host_run(), env.data, batch_size=env.config.host_training.batch_size) for env in envs]


class BatchedEngine:
    """Environments of equal structure as one computation; the rest one by one."""

    name = "batched"

    def train(self, envs: Sequence[MorphogeneticEnv]) -> list[EpochStats]:
        groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for index, env in enumerate(envs):
            groups[env.host_key].append(index)
        parts: list[EpochPart] = [
            StackedPart([envs[i].host_run() for i in members])
            if len(members) > 1
            else SinglePart(envs[members[0]].host_run())
            for members in groups.values()
        ]
        first = envs[0]
        results = train_parts(parts, first.data, batch_size=first.config.host_training.batch_size)
        order = [index for members in groups.values() for index in members]
        stats: list[EpochStats | None] = [None] * len(envs)
        for index, result in zip(order, results, strict=True):
            stats[index] = result
        return [s for s in stats if s is not None]


def make_engine(name: str, num_envs: int, topology: str = "mlp") -> HostEngine:
    """The engine called ``name`` (``auto`` resolved for ``num_envs`` environments with ``topology`` hosts)."""
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown host engine {name!r}; expected one of {list(ENGINE_NAMES)}")
    if name == "auto":
        pays = num_envs >= AUTO_BATCHED_MIN_ENVS and topology in AUTO_BATCHED_TOPOLOGIES
        name = "batched" if pays else "loop"
    return BatchedEngine() if name == "batched" else LoopEngine()
