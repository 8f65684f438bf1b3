"""The process group of a data-parallel run, and its collectives.

Every process of a ``torchrun`` job is a full actor-learner (CleanRL's ``ppo_atari_multigpu``):
it steps its share of the environments, and the PPO update reduces gradients and statistics
through :class:`ProcessGroupCollectives`. :func:`distributed_context` reads torchrun's
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; without them (or with a world size of 1) there is no
process group at all and every collective is :data:`~esper.simic.agent.collectives.LOCAL`'s no-op,
so a single-process run computes exactly what it always did.

Determinism: the same seed and the same world size give identical runs on CPU. Environment ``i``
of round ``r`` gets the same reset seed whatever the world size (the global environment index),
but each replica shuffles its own minibatches and samples its own actions, so runs with different
world sizes agree only in distribution.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from esper.simic.agent.collectives import LOCAL, Collectives
from esper.simic.training.rng import replica_seed


@dataclass(frozen=True, slots=True)
class DistributedContext:
    """Where this process sits in the job."""

    device: torch.device
    """This replica's device: ``cuda:LOCAL_RANK`` for a multi-process CUDA run, else the one asked for."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    reduce: Collectives = LOCAL
    """The collectives to hand to the agent and the normalisers."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that owns the run directory and reports."""
        return self.rank == 0

    def local_envs(self, num_envs: int) -> int:
        """This replica's share of ``num_envs`` (the total); see :func:`split_envs`."""
        return split_envs(num_envs, self.world_size)

    def env_indices(self, num_envs: int) -> range:
        """Global indices of this replica's environments."""
        share = self.local_envs(num_envs)
        return range(self.rank * share, (self.rank + 1) * share)

    def rank_seed(self, seed: int, stream: int) -> int:
        """Seed of a per-replica stream; rank 0 of any job gets the single-process seed."""
        return replica_seed(seed, stream, self.rank)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every replica's ``obj`` (picklable), in rank order, on every replica."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with peers_reachable():
            dist.all_gather_object(out, obj)
        return out

    def agree(self, error: str | None) -> None:
        """Share whether this replica failed (``error``: its message); the others raise
        :class:`DistributedError` with the first failure's message, so a failure in one (e.g. rank
        0 not getting the run directory) ends all of them instead of a hang. The failed replica
        raises its own exception after this returns."""
        errors = [e for e in self.gather_objects(error) if e is not None]
        if errors and error is None:
            raise DistributedError(errors[0])


class DistributedError(RuntimeError):
    """Another replica of the job failed; its message is this one."""


PEER_LOST = "lost contact with another process of the job"
"""In the message of a collective that failed because a peer is gone (killed, crashed, unreachable): a
consequence, which the launcher reports only when no process failed for a reason of its own."""


@contextmanager
def peers_reachable() -> Iterator[None]:
    """Around a collective: a peer that is gone ends this process with one :class:`DistributedError`
    line instead of the backend's traceback.

    A killed or crashed peer resets gloo's connections (a plain ``RuntimeError`` thrown by
    ``gloo/transport``: "Connection reset by peer", a receive timeout); other backends raise
    ``torch.distributed.DistError``. Any other error (a bug: a wrong shape, a wrong device) keeps
    its traceback.
    """
    try:
        yield
    except RuntimeError as exc:
        if isinstance(exc, DistributedError) or not (isinstance(exc, dist.DistError) or "gloo/transport" in str(exc)):
            raise
        raise DistributedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: {PEER_LOST} ({_backend_reason(exc)}); "
            "the output of the process that stopped first says why"
        ) from exc


def _backend_reason(exc: BaseException) -> str:
    """The backend's finding without its source location and advice: ``[.../pair.cc:545] Read error
    [127.0.0.1]:7872: Connection reset by peer. This is typically ...`` gives ``Read error [127.0.0.1]:7872:
    Connection reset by peer``."""
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^\[[^\]]*\]\s*", "", first_line).split(". ")[0].rstrip(".")


def split_envs(num_envs: int, world_size: int) -> int:
    """Environments per replica; ``ValueError`` unless ``num_envs`` splits evenly over ``world_size``.

    Every replica gets the same share, so each takes the same number of minibatches an update
    (:meth:`~esper.simic.agent.PPOConfig.minibatches_for`) and their collectives stay in step."""
    if num_envs % world_size:
        raise ValueError(
            f"--num-envs {num_envs} does not split evenly over {world_size} processes; use a multiple of {world_size}"
        )
    share = num_envs // world_size
    return share


class ProcessGroupCollectives:
    """:class:`~esper.simic.agent.collectives.Collectives` over the default ``torch.distributed`` group.

    Tensors travel on ``device`` (nccl needs CUDA tensors) and come back where they were.
    """

    def __init__(self, world_size: int, device: torch.device):
        self._world_size = world_size
        self.device = device

    @property
    def world_size(self) -> int:
        return self._world_size

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        for tensor in tensors:
            moved = tensor.to(self.device)
            with peers_reachable():
                dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            tensor.copy_(moved / self._world_size)

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        moved = tensor.to(self.device).contiguous()
        parts = [torch.empty_like(moved) for _ in range(self._world_size)]
        with peers_reachable():
            dist.all_gather(parts, moved)
        return [part.to(tensor.device) for part in parts]


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


@contextmanager
def distributed_context(
    device: torch.device, *, timeout_s: float, environ: Mapping[str, str] | None = None
) -> Iterator[DistributedContext]:
    """The job this process belongs to, with its process group set up for the block's life.

    Args:
        device: the device asked for (``config.device``); a multi-process CUDA job puts rank
            ``LOCAL_RANK`` on ``cuda:LOCAL_RANK``.
        timeout_s: bound on the rendezvous and on every collective: a dead peer or a rendezvous
            that never completes ends the job with an error instead of a hang.
        environ: the variables torchrun sets (default ``os.environ``).

    Raises:
        ValueError: nccl would be needed but CUDA is not available, or a bad torchrun variable.
        DistributedError: the rendezvous did not complete within ``timeout_s``.
    """
    env = os.environ if environ is None else environ
    world_size = _env_int(env, "WORLD_SIZE", 1)
    if world_size <= 1:
        yield DistributedContext(device=device)
        return
    rank, local_rank = _env_int(env, "RANK", 0), _env_int(env, "LOCAL_RANK", 0)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("the nccl backend needs CUDA, which is not available on this machine; use --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"data-parallel training supports the cpu and cuda devices, not {device.type!r}")
    timeout = datetime.timedelta(seconds=timeout_s)
    try:
        store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world_size, timeout=timeout))
        # torchrun's agent keeps one store across restarts of the worker group: without a prefix of
        # its own, a restarted group would read the dead attempt's gloo addresses and never connect.
        attempt = _env_int(env, "TORCHELASTIC_RESTART_COUNT", 0)
        store = dist.PrefixStore(f"esper/attempt_{attempt}/", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    except (RuntimeError, ValueError) as exc:  # DistStoreError (a RuntimeError) on a rendezvous timeout
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DistributedError(
            f"rank {rank} of {world_size}: the process group did not form within {timeout_s:g} s "
            f"(dist_timeout_s): {first_line}"
        ) from exc
    try:
        yield DistributedContext(
            rank=rank,
            world_size=world_size,
            local_rank=local_rank,
            device=device,
            reduce=ProcessGroupCollectives(world_size, device),
        )
    finally:
        dist.destroy_process_group()
