"""Hand-made episode summaries for tests that drive toy environments or check statistics."""

from __future__ import annotations

from typing import Any

from esper.simic.env import EpisodeSummary

_DEFAULTS: dict[str, Any] = {
    "discounted_return": 0.0,
    "reward_components": {},
    "length": 4,
    "final_accuracy": 50.0,
    "final_loss": 1.0,
    "host_accuracy": 50.0,
    "committed_accuracy": 50.0,
    "germinated": 0,
    "fossilized": 0,
    "pruned": 0,
    "rollbacks": 0,
    "invalid_actions": 0,
    "fossilized_slots": (),
    "seed_params": 0,
    "host_params": 10,
    "extra_compute": 0.0,
    "objective": 50.0,
}


def make_summary(**fields: Any) -> EpisodeSummary:
    """An ``EpisodeSummary`` of a plain no-growth episode, with ``fields`` replacing the defaults."""
    return EpisodeSummary(**{**_DEFAULTS, **fields})
