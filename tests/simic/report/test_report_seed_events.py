"""Seed events read from stage changes: germinate, fossilize, prune, whatever op (if any) caused them."""

from __future__ import annotations

from esper.simic.env import SlotTrace
from esper.simic.report.seed_events import SeedEvent, SeedEventKind, seed_events
from esper.simic.training.traces import EpisodeTrace, StepTrace

GERMINATE, FOSSILIZE, PRUNE = SeedEventKind.GERMINATE, SeedEventKind.FOSSILIZE, SeedEventKind.PRUNE


def episode(*stages: tuple[str, str]) -> EpisodeTrace:
    """A two-slot episode whose step ``i`` leaves slot r0 in ``stages[i][0]`` and r1 in ``stages[i][1]``."""
    steps = tuple(
        StepTrace(
            step=i,
            epoch=i + 1,
            op="WAIT",
            action_valid=True,
            heads={},
            slots=tuple(
                SlotTrace(slot_id, stage, None, 0.0, None, 0) for slot_id, stage in zip(("r0", "r1"), pair, strict=True)
            ),
            val_accuracy=50.0,
            val_loss=1.0,
            host_params=100,
            seed_params=0,
            extra_compute=0.0,
            reward=0.0,
            reward_components={},
        )
        for i, pair in enumerate(stages)
    )
    return EpisodeTrace(episode=0, seed=1, steps=steps)


def test_a_seed_that_lives_and_one_that_is_pruned() -> None:
    trace = episode(
        ("GERMINATED", "DORMANT"),  # epoch 1: r0 germinates
        ("TRAINING", "TRAINING"),  # epoch 2: r1 germinates and ticks to TRAINING in the same step
        ("BLENDING", "TRAINING"),
        ("HOLDING", "PRUNED"),  # epoch 4: r1 pruned
        ("FOSSILIZED", "EMBARGOED"),  # epoch 5: r0 fossilized; PRUNED → EMBARGOED is no new event
        ("FOSSILIZED", "RESETTING"),
        ("FOSSILIZED", "DORMANT"),
    )
    assert seed_events(trace) == [
        SeedEvent(1, 0, GERMINATE),
        SeedEvent(2, 1, GERMINATE),
        SeedEvent(4, 1, PRUNE),
        SeedEvent(5, 0, FOSSILIZE),
    ]


def test_hops_past_the_marked_stage_still_count() -> None:
    # A prune and the lifecycle tick in one step skip PRUNED; a germinate and two ticks skip GERMINATED.
    trace = episode(("BLENDING", "GERMINATED"), ("BLENDING", "EMBARGOED"), ("DORMANT", "DORMANT"))
    assert seed_events(trace) == [SeedEvent(1, 0, GERMINATE), SeedEvent(1, 1, GERMINATE), SeedEvent(2, 1, PRUNE)]


def test_an_episode_without_growth_or_steps_has_no_events() -> None:
    assert seed_events(episode(("DORMANT", "DORMANT"), ("DORMANT", "DORMANT"))) == []
    assert seed_events(EpisodeTrace(episode=0, seed=1, steps=())) == []
