"""Fixtures shared by the whole suite: a fixed torch thread count, rollouts recorded as a buffer stores them, and
the Hypothesis profiles (a quick pass in the fast suite, a thorough one in CI's slow step)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import pytest
import torch
from hypothesis import is_hypothesis_test, settings

from esper.tamiyo.contract import ActionMasks, Observation, op_conditioned_slot_mask
from esper.tamiyo.policy import ActionResult, Hidden, TrainablePolicyBundle

#: Property tests draw few examples by default so the fast suite stays under a minute on a loaded 2-core
#: box; ``.ci/run`` reruns every one of them (marker ``property``) with ``--hypothesis-profile=thorough``.
#: No deadline: per-example times swing tenfold with machine load.
settings.register_profile("fast", max_examples=10, deadline=None)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile("fast")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every Hypothesis test ``property``, so the thorough pass can select them all."""
    for item in items:
        if isinstance(item, pytest.Function) and is_hypothesis_test(item.obj):
            item.add_marker(pytest.mark.property)


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_torch() -> Iterator[None]:
    """Run every test with one torch intra-op thread.

    Speed: the suite runs thousands of tiny forward passes, and on the 2-core CI box torch's
    intra-op thread pool makes each one wait for busy cores (measured ~100x slower under load:
    0.25 s instead of 2 ms per policy call). Determinism: CPU float reductions split their sums by
    thread, so results depend on the thread count; tests that compare runs bit for bit (resume,
    rollout/update parity) need the same count everywhere, whatever machine runs them.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class RecordedRollout(NamedTuple):
    """A step-by-step rollout, and the ``[B, T, ...]`` view of it that ``evaluate_actions`` takes."""

    results: list[ActionResult]
    """What ``get_action`` returned at each step."""
    obs: Observation
    """Observations stacked along time: features ``[B, T, F]``, blueprint indices ``[B, T, S]``."""
    actions: dict[str, torch.Tensor]
    """Actions taken per head, ``[B, T]``."""
    masks: ActionMasks
    """Stored masks ``[B, T, n]``: the slot head holds the ``slot_by_op`` row of the op taken; no ``slot_by_op``."""


def _record_rollout(
    policy: TrainablePolicyBundle,
    steps: Sequence[tuple[Observation, ActionMasks]],
    *,
    hidden: Hidden = None,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> RecordedRollout:
    """Call ``get_action`` on each ``(obs [B, ...], masks)`` in turn, threading ``hidden``, and keep
    what a rollout buffer would: the actions taken and the op-conditioned slot mask."""
    results, stored = [], []
    for obs, masks in steps:
        result = policy.get_action(obs, masks, hidden, deterministic, generator=generator)
        assert masks.slot_by_op is not None
        heads = dict(masks.heads)
        heads["slot"] = op_conditioned_slot_mask(masks.slot_by_op, result.actions["op"])
        results.append(result)
        stored.append(heads)
        hidden = result.hidden
    names = policy.action_space.head_names
    features = torch.stack([obs.features for obs, _ in steps], 1)
    return RecordedRollout(
        results,
        Observation(features, torch.stack([obs.blueprint_indices for obs, _ in steps], 1)),
        {h: torch.stack([r.actions[h] for r in results], 1) for h in names},
        ActionMasks({h: torch.stack([m[h] for m in stored], 1) for h in names}),
    )


RecordRollout = Callable[..., RecordedRollout]


@pytest.fixture
def record_rollout() -> RecordRollout:
    """``record_rollout(policy, [(obs, masks), ...], hidden=None, deterministic=False, generator=None)``."""
    return _record_rollout
