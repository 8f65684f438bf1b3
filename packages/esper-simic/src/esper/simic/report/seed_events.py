"""The moments of a seed's life an episode timeline marks: germinated, fossilized, pruned.

They are read from each slot's stage step to step rather than from the chosen op: the stage is
what happened (an op can be refused and run as WAIT; the lifecycle tick and a governor rollback
change stages without an op), and one step can make several hops (``GERMINATED`` → ``TRAINING``,
``PRUNED`` → ``EMBARGOED``), so a transition is classified by the kind of stage it leaves and
reaches, not by the exact pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from esper.simic.training.traces import EpisodeTrace
from esper.tamiyo.contract import SeedStage

#: Stages in which a slot holds a live (not yet fossilized) seed.
LIVE_STAGES = frozenset(
    {SeedStage.GERMINATED.name, SeedStage.TRAINING.name, SeedStage.BLENDING.name, SeedStage.HOLDING.name}
)
#: Stages a pruned seed passes through before its slot is empty again.
PRUNED_STAGES = frozenset({SeedStage.PRUNED.name, SeedStage.EMBARGOED.name, SeedStage.RESETTING.name})


class SeedEventKind(Enum):
    """What happened to a slot's seed."""

    GERMINATE = "germinate"
    FOSSILIZE = "fossilize"
    PRUNE = "prune"


@dataclass(frozen=True, slots=True)
class SeedEvent:
    """One lifecycle event of an episode."""

    epoch: int
    """Epoch of the step that made it (its ``StepTrace.epoch``; 1 for the first step)."""
    slot: int
    """Index of the slot in the trace's slot order."""
    kind: SeedEventKind


def seed_events(trace: EpisodeTrace) -> list[SeedEvent]:
    """Every germination, fossilization and pruning in ``trace``, by epoch, then slot.

    Before the first step every slot counts as ``DORMANT`` (an episode starts with empty slots).
    """
    if not trace.steps:
        return []
    previous = [SeedStage.DORMANT.name] * len(trace.steps[0].slots)
    events = []
    for step in trace.steps:
        for index, slot in enumerate(step.slots):
            kind = _transition(previous[index], slot.stage)
            if kind is not None:
                events.append(SeedEvent(step.epoch, index, kind))
            previous[index] = slot.stage
    return events


def _transition(before: str, after: str) -> SeedEventKind | None:
    if after == before:
        return None
    if after == SeedStage.FOSSILIZED.name:
        return SeedEventKind.FOSSILIZE
    if after in PRUNED_STAGES and before in LIVE_STAGES:
        return SeedEventKind.PRUNE
    if after in LIVE_STAGES and before not in LIVE_STAGES:
        return SeedEventKind.GERMINATE
    return None
