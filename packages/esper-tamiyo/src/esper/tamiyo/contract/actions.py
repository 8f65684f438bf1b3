"""The members of each morphogenetic action head and what they mean.

Values are indices into the head's logits and are fixed by the contract (the same order as
esper-lite's heads). Numeric meanings (epochs, ticks, amplitudes) live next to the enums in
tuples indexed by value so the hot path never builds enum objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType


class LifecycleOp(IntEnum):
    """The lifecycle operation; chosen first, it decides which other heads matter."""

    WAIT = 0
    GERMINATE = 1
    SET_ALPHA_TARGET = 2
    PRUNE = 3
    FOSSILIZE = 4
    ADVANCE = 5


class BlueprintAction(IntEnum):
    """Seed architectures. NOOP is a placeholder value and is never selectable."""

    NOOP = 0
    CONV_LIGHT = 1
    ATTENTION = 2
    NORM = 3
    DEPTHWISE = 4
    BOTTLENECK = 5
    CONV_SMALL = 6
    CONV_HEAVY = 7
    LORA = 8
    LORA_LARGE = 9
    MLP_SMALL = 10
    MLP = 11
    FLEX_ATTENTION = 12

    @property
    def blueprint_id(self) -> str:
        """String id used by hosts and configs, e.g. ``"conv_light"``."""
        return self.name.lower()


class GerminationStyle(IntEnum):
    """A blend curve and an alpha algorithm joined into one choice (invalid pairs cannot be expressed)."""

    LINEAR_ADD = 0
    LINEAR_MULTIPLY = 1
    SIGMOID_ADD = 2
    GATED_GATE = 3


class AlphaAlgorithm(IntEnum):
    """How a seed's output is composed with the host activation (the environment implements each mode)."""

    ADD = 1
    MULTIPLY = 2
    GATE = 3


class AlphaCurve(IntEnum):
    """Easing curve of an alpha ramp."""

    LINEAR = 1
    COSINE = 2
    SIGMOID = 3


class AlphaMode(IntEnum):
    """State of a seed's alpha controller: idle (HOLD) or ramping."""

    HOLD = 0
    UP = 1
    DOWN = 2


class TempoAction(IntEnum):
    """Length of the BLENDING ramp chosen at GERMINATE."""

    FAST = 0
    STANDARD = 1
    SLOW = 2


class AlphaTargetAction(IntEnum):
    """Non-zero alpha amplitude (PRUNE is how alpha goes to zero)."""

    HALF = 0
    SEVENTY = 1
    FULL = 2


class AlphaSpeedAction(IntEnum):
    """Length of a retarget or scheduled-prune ramp, in controller ticks (epochs)."""

    INSTANT = 0
    FAST = 1
    MEDIUM = 2
    SLOW = 3


class AlphaCurveAction(IntEnum):
    """Curve choice; the three sigmoid members differ only in steepness."""

    LINEAR = 0
    COSINE = 1
    SIGMOID_GENTLE = 2
    SIGMOID = 3
    SIGMOID_SHARP = 4


#: Blend ramp length in epochs, indexed by ``TempoAction``.
TEMPO_EPOCHS: tuple[int, ...] = (3, 5, 8)
#: Alpha amplitude, indexed by ``AlphaTargetAction``.
ALPHA_TARGET_VALUES: tuple[float, ...] = (0.5, 0.7, 1.0)
#: Ramp length in ticks, indexed by ``AlphaSpeedAction`` (0 = instant).
ALPHA_SPEED_TICKS: tuple[int, ...] = (0, 3, 5, 8)
#: ``(AlphaCurve, sigmoid steepness)`` indexed by ``AlphaCurveAction``; steepness is unused for linear/cosine.
ALPHA_CURVES: tuple[tuple[AlphaCurve, float], ...] = (
    (AlphaCurve.LINEAR, 12.0),
    (AlphaCurve.COSINE, 12.0),
    (AlphaCurve.SIGMOID, 6.0),
    (AlphaCurve.SIGMOID, 12.0),
    (AlphaCurve.SIGMOID, 24.0),
)
#: ``(blend curve, AlphaAlgorithm)`` indexed by ``GerminationStyle``; the blend curve shapes the BLENDING ramp.
STYLE_BLENDS: tuple[tuple[AlphaCurve, AlphaAlgorithm], ...] = (
    (AlphaCurve.LINEAR, AlphaAlgorithm.ADD),
    (AlphaCurve.LINEAR, AlphaAlgorithm.MULTIPLY),
    (AlphaCurve.SIGMOID, AlphaAlgorithm.ADD),
    # Gated ramps linearly on purpose: a sigmoid ramp times a near-zero learned gate starves the
    # gate of gradient.
    (AlphaCurve.LINEAR, AlphaAlgorithm.GATE),
)

#: Selectable blueprints per host topology (NOOP is never selectable).
TOPOLOGY_BLUEPRINTS: Mapping[str, tuple[BlueprintAction, ...]] = MappingProxyType(
    {
        "cnn": (
            BlueprintAction.CONV_LIGHT,
            BlueprintAction.ATTENTION,
            BlueprintAction.NORM,
            BlueprintAction.DEPTHWISE,
            BlueprintAction.BOTTLENECK,
            BlueprintAction.CONV_SMALL,
            BlueprintAction.CONV_HEAVY,
        ),
        "mlp": (
            BlueprintAction.ATTENTION,
            BlueprintAction.NORM,
            BlueprintAction.LORA,
            BlueprintAction.LORA_LARGE,
            BlueprintAction.MLP_SMALL,
            BlueprintAction.MLP,
        ),
        "transformer": (
            BlueprintAction.ATTENTION,
            BlueprintAction.NORM,
            BlueprintAction.LORA,
            BlueprintAction.LORA_LARGE,
            BlueprintAction.MLP_SMALL,
            BlueprintAction.MLP,
            BlueprintAction.FLEX_ATTENTION,
        ),
    }
)
TOPOLOGIES: tuple[str, ...] = tuple(TOPOLOGY_BLUEPRINTS)


def topology_blueprints(topology: str) -> tuple[BlueprintAction, ...]:
    """Selectable blueprints of ``topology``; ``ValueError`` naming the known topologies otherwise."""
    try:
        return TOPOLOGY_BLUEPRINTS[topology]
    except (KeyError, TypeError):
        raise ValueError(f"unknown topology {topology!r}; expected one of {list(TOPOLOGIES)}") from None
