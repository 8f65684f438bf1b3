"""Random-number state of a run: seeding, isolation from the caller, capture and restore.

The trainer passes a ``torch.Generator`` to everything that samples on purpose, but code it does
not own (network initialisation, a plugin policy, host training) may still draw from the global
torch / numpy / ``random`` generators. :func:`isolated_global_rngs` seeds those for the duration
of a run and restores the caller's state afterwards, so a run is reproducible and leaves no
trace on the process. :func:`capture_rng_state` / :func:`restore_rng_state` move every state in
and out of a checkpoint as tensors, lists and ints only (``torch.load(weights_only=True)`` safe).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import torch

#: Fixed stream ids mixed into derived seeds so different consumers never share a sequence.
TRAIN_RESET_STREAM = 0
EVAL_RESET_STREAM = 1
SAMPLER_STREAM = 2
GLOBAL_STREAM = 3
SHUFFLE_STREAM = 4
EVAL_SAMPLER_STREAM = 5
"""Action sampling of the stochastic learned policy in evaluation."""
EVAL_RANDOM_STREAM = 6
"""Choices of the random-policy baseline in evaluation."""
TRACE_STREAM = 7
"""The episode traced every K rounds while training (``trace_every``): its reset seed and the global
generators' seed while it plays."""


def derive_seed(*entropy: int) -> int:
    """A 32-bit seed from integers (e.g. ``(run_seed, stream, round, env_index)``), via ``SeedSequence``.

    Stable across platforms and numpy versions, and statistically independent for distinct inputs.
    """
    if any(e < 0 for e in entropy):
        raise ValueError(f"seed entropy must be non-negative integers, got {entropy}")
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def replica_seed(seed: int, stream: int, rank: int) -> int:
    """Seed of ``stream`` for replica ``rank`` of a data-parallel run; rank 0 (and a single-process
    run) gets ``derive_seed(seed, stream)``, so one process draws exactly what it always did."""
    return derive_seed(seed, stream) if rank == 0 else derive_seed(seed, stream, rank)


def make_sampler(seed: int, device: torch.device, *, rank: int = 0) -> torch.Generator:
    """The action-sampling generator of a run (of replica ``rank``), on the policy's device."""
    generator = torch.Generator(device=device)
    generator.manual_seed(replica_seed(seed, SAMPLER_STREAM, rank))
    return generator


def _uses_cuda(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


@contextmanager
def isolated_global_rngs(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global torch (CPU, and CUDA for a CUDA ``device``), numpy and ``random`` generators
    from ``seed`` inside the block; restore the caller's states on exit."""
    cuda_devices: list[int] = []
    if _uses_cuda(device):
        cuda_devices.append(torch.cuda.current_device() if device.index is None else device.index)
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    global_seed = derive_seed(seed, GLOBAL_STREAM)
    try:
        with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
            torch.manual_seed(global_seed)
            np.random.seed(global_seed)
            random.seed(global_seed)
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` torch intra-op CPU threads (None: unchanged); restore after.

    Thread count is part of reproducibility, not only speed: reductions may sum in another order.
    """
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def capture_rng_state(sampler: torch.Generator) -> dict[str, Any]:
    """Every RNG state that can influence the rest of a run, as checkpoint-safe values."""
    kind, keys, pos, has_gauss, cached_gauss = cast(
        tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True)
    )
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
            "kind": str(kind),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
        "sampler": sampler.get_state(),
        "sampler_device": str(sampler.device),
    }
    if _uses_cuda(sampler.device):
        state["cuda"] = torch.cuda.get_rng_state(sampler.device)
    return state


def restore_rng_state(state: dict[str, Any], sampler: torch.Generator) -> None:
    """Inverse of :func:`capture_rng_state` (the global states and ``sampler``, in place).

    A sampler state saved on another device type (a CUDA run resumed on CPU) cannot be moved
    across; ``sampler`` then keeps its fresh seeding, and the run continues reproducibly but not
    bit-identically to the original.
    """
    torch.set_rng_state(state["torch_cpu"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gauss"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))
    if torch.device(state["sampler_device"]).type == sampler.device.type:
        sampler.set_state(state["sampler"])
    if "cuda" in state and _uses_cuda(sampler.device):
        torch.cuda.set_rng_state(state["cuda"], sampler.device)
