"""Host engines: how a :class:`~esper.simic.env.VectorEnv` trains its environments' host epochs.

Every step, each active environment executes its action and ticks its lifecycle
(``MorphogeneticEnv.begin_step``); the engine then trains all their epochs and validates the
trained models; each environment runs its governor and observes (``finish_step``). Engines differ
only in how they train and validate, never in what they compute (up to float rounding):

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
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, get_args

from esper.simic.env.host_epoch import EpochPart, EpochStats, SinglePart, train_epoch, train_parts
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.stacked_epoch import StackedPart
from esper.simic.env.stacked_validation import validate_stacked
from esper.simic.env.validation import ValidationResult, validate

if TYPE_CHECKING:
    from esper.simic.env.morphogenetic import MorphogeneticEnv

T = TypeVar("T")
EngineName = Literal["auto", "loop", "batched"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)
#: ``auto`` batches from this many environments on (measured: ``scripts/bench_env.py``).
AUTO_BATCHED_MIN_ENVS = 2
#: Host topologies ``auto`` batches (module docstring).
AUTO_BATCHED_TOPOLOGIES: frozenset[str] = frozenset({"mlp", "cnn"})


class HostEngine(Protocol):
    """Trains one host epoch of each environment (each after its ``begin_step``), then validates them."""

    name: str

    def train(self, envs: Sequence[MorphogeneticEnv]) -> list[EpochStats]:
        """The epoch statistics of ``envs``, in order."""
        ...

    def validate(self, envs: Sequence[MorphogeneticEnv]) -> list[ValidationResult]:
        """The validation (with counterfactuals) of each of ``envs``' models as trained, in order."""
        ...


def _model(env: MorphogeneticEnv) -> MorphogeneticModel:
    if env.model is None:
        raise RuntimeError("a host engine needs environments that have been reset")
    return env.model


def _validate(env: MorphogeneticEnv) -> ValidationResult:
    return validate(_model(env), env.data.val_x, env.data.val_y, chunk_size=env.config.host_training.val_batch_size)


def _by_host_shape(envs: Sequence[MorphogeneticEnv]) -> list[list[int]]:
    """Indices of ``envs`` grouped by ``host_key``, in order of first appearance."""
    groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for index, env in enumerate(envs):
        groups[env.host_key].append(index)
    return list(groups.values())


def _in_order(groups: list[list[int]], results: Sequence[T]) -> list[T]:
    """``results`` (one per index, in the order of ``groups``) back in index order."""
    order = [index for members in groups for index in members]
    placed: dict[int, T] = dict(zip(order, results, strict=True))
    return [placed[index] for index in range(len(order))]


class LoopEngine:
    """One environment after another."""

    name = "loop"

    def train(self, envs: Sequence[MorphogeneticEnv]) -> list[EpochStats]:
        return [train_epoch(env.host_run(), env.data, batch_size=env.config.host_training.batch_size) for env in envs]

    def validate(self, envs: Sequence[MorphogeneticEnv]) -> list[ValidationResult]:
        return [_validate(env) for env in envs]


class BatchedEngine:
    """Hosts of one shape stacked, validated in one pass; every environment's minibatch in one backward and update."""

    name = "batched"

    def train(self, envs: Sequence[MorphogeneticEnv]) -> list[EpochStats]:
        groups = _by_host_shape(envs)
        parts: list[EpochPart] = [
            StackedPart([envs[i].host_run() for i in members])
            if len(members) > 1
            else SinglePart(envs[members[0]].host_run())
            for members in groups
        ]
        first = envs[0]
        return _in_order(groups, train_parts(parts, first.data, batch_size=first.config.host_training.batch_size))

    def validate(self, envs: Sequence[MorphogeneticEnv]) -> list[ValidationResult]:
        groups = _by_host_shape(envs)
        results: list[ValidationResult] = []
        for members in groups:
            if len(members) == 1:
                results.append(_validate(envs[members[0]]))
                continue
            first = envs[members[0]]
            models = [_model(envs[i]) for i in members]
            chunk = first.config.host_training.val_batch_size
            results += validate_stacked(models, first.data.val_x, first.data.val_y, chunk_size=chunk)
        return _in_order(groups, results)


def make_engine(name: str, num_envs: int, topology: str = "mlp") -> HostEngine:
    """The engine called ``name`` (``auto`` resolved for ``num_envs`` environments with ``topology`` hosts)."""
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown host engine {name!r}; expected one of {list(ENGINE_NAMES)}")
    if name == "auto":
        pays = num_envs >= AUTO_BATCHED_MIN_ENVS and topology in AUTO_BATCHED_TOPOLOGIES
        name = "batched" if pays else "loop"
    return BatchedEngine() if name == "batched" else LoopEngine()
