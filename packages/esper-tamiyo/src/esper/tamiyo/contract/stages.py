"""Seed lifecycle stages and the legal transitions between them.

The integer values are part of the contract (they appear in observations, checkpoints and
telemetry), so they never change; 5 is retired (the reference's former SHADOWING stage).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType


class SeedStage(IntEnum):
    """Where a seed is in its life. Values are fixed by the contract."""

    UNKNOWN = 0
    DORMANT = 1
    GERMINATED = 2
    TRAINING = 3
    BLENDING = 4
    HOLDING = 6
    FOSSILIZED = 7
    PRUNED = 8
    EMBARGOED = 9
    RESETTING = 10


class IllegalTransitionError(ValueError):
    """A stage change that the transition table does not allow."""


VALID_TRANSITIONS: Mapping[SeedStage, tuple[SeedStage, ...]] = MappingProxyType(
    {
        SeedStage.UNKNOWN: (SeedStage.DORMANT,),
        SeedStage.DORMANT: (SeedStage.GERMINATED,),
        SeedStage.GERMINATED: (SeedStage.TRAINING, SeedStage.PRUNED),
        SeedStage.TRAINING: (SeedStage.BLENDING, SeedStage.PRUNED),
        SeedStage.BLENDING: (SeedStage.HOLDING, SeedStage.PRUNED),
        # FOSSILIZED first: the default "advance" out of HOLDING means finalise.
        SeedStage.HOLDING: (SeedStage.FOSSILIZED, SeedStage.BLENDING, SeedStage.PRUNED),
        SeedStage.FOSSILIZED: (),
        SeedStage.PRUNED: (SeedStage.EMBARGOED,),
        SeedStage.EMBARGOED: (SeedStage.RESETTING,),
        SeedStage.RESETTING: (SeedStage.DORMANT,),
    }
)
"""Legal next stages for every stage; FOSSILIZED is terminal."""

#: The order in which stages are one-hot encoded in observations (index 0..9).
STAGE_ORDER: tuple[SeedStage, ...] = tuple(SeedStage)

#: Stages whose seed takes part in the host's forward pass.
ACTIVE_STAGES = frozenset({SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING, SeedStage.FOSSILIZED})
#: Stages of a seed that was removed and whose slot is being cleaned up.
FAILURE_STAGES = frozenset({SeedStage.PRUNED, SeedStage.EMBARGOED, SeedStage.RESETTING})
#: Stages from which PRUNE is structurally possible.
PRUNABLE_STAGES = frozenset(s for s, nxt in VALID_TRANSITIONS.items() if SeedStage.PRUNED in nxt)
#: Stages that block any new germination ("one developing seed at a time", reference rule D3).
GERMINATION_BLOCKING_STAGES = frozenset(
    {SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.PRUNED, SeedStage.EMBARGOED, SeedStage.RESETTING}
)
#: Stages that ADVANCE moves forward (GERMINATED→TRAINING→BLENDING→HOLDING).
ADVANCEABLE_STAGES = frozenset({SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING})


def can_transition(source: SeedStage | int, target: SeedStage | int) -> bool:
    """Whether ``source → target`` is in the transition table."""
    return SeedStage(target) in VALID_TRANSITIONS[SeedStage(source)]


def check_transition(source: SeedStage | int, target: SeedStage | int) -> SeedStage:
    """Return ``target`` as a ``SeedStage`` or raise ``IllegalTransitionError`` naming both ends."""
    src, dst = SeedStage(source), SeedStage(target)
    if dst not in VALID_TRANSITIONS[src]:
        allowed = ", ".join(s.name for s in VALID_TRANSITIONS[src]) or "none (terminal)"
        raise IllegalTransitionError(
            f"illegal seed transition {src.name} -> {dst.name}; allowed from {src.name}: {allowed}"
        )
    return dst


def is_terminal_stage(stage: SeedStage | int) -> bool:
    """FOSSILIZED is the only terminal (successful) stage."""
    return SeedStage(stage) == SeedStage.FOSSILIZED
