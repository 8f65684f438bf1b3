"""Run-level RNG handling: derived seeds, isolation of the caller's global state, checkpoint round trip."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from esper.simic.training.rng import (
    capture_rng_state,
    derive_seed,
    isolated_global_rngs,
    make_sampler,
    restore_rng_state,
)


def _draw(sampler: torch.Generator) -> tuple[float, float, float, float]:
    return (
        float(torch.rand(())),
        float(np.random.rand()),
        random.random(),
        float(torch.rand((), generator=sampler)),
    )


def test_derive_seed_is_stable_and_distinct() -> None:
    assert derive_seed(42, 0, 3, 1) == derive_seed(42, 0, 3, 1)
    assert len({derive_seed(42, 0, r, i) for r in range(20) for i in range(8)}) == 160
    assert 0 <= derive_seed(7) < 2**32


def test_isolation_restores_the_callers_global_state() -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    expected = (float(torch.rand(())), float(np.random.rand()), random.random())
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    with isolated_global_rngs(123, torch.device("cpu")):
        inside_a = (float(torch.rand(())), float(np.random.rand()), random.random())
    assert (float(torch.rand(())), float(np.random.rand()), random.random()) == expected
    with isolated_global_rngs(123, torch.device("cpu")):
        inside_b = (float(torch.rand(())), float(np.random.rand()), random.random())
    assert inside_a == inside_b


def test_capture_and_restore_survive_a_weights_only_round_trip() -> None:
    sampler = make_sampler(9, torch.device("cpu"))
    with isolated_global_rngs(9, torch.device("cpu")):
        _draw(sampler)
        buffer = io.BytesIO()
        torch.save(capture_rng_state(sampler), buffer)
        expected = [_draw(sampler) for _ in range(3)]
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        other = make_sampler(1, torch.device("cpu"))
        restore_rng_state(state, other)
        assert [_draw(other) for _ in range(3)] == expected
