"""Value checks shared by the config dataclasses of ``esper.simic`` (environment, reward, PPO).

Every float option ends up in a float32 tensor or a torch optimiser, so "a finite number" is not
enough: a value above float32's range (``--host-lr 1e39``) passes Python's ``math.isfinite`` and
then overflows deep inside torch (an SGD step cannot convert ``lr`` to float32). :func:`check_float`
therefore bounds every float by :data:`FLOAT32_MAX` as well, once, for every config.
"""

from __future__ import annotations

import math

import torch

FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""Largest finite float32 (about 3.4e38): the bound of every float option."""


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Raise unless ``value`` is an int (not a bool) ``>= minimum`` and, if given, ``<= maximum``.

    Messages name ``name``. A size that allocates memory takes a ``maximum`` (a named, documented
    constant), so a mistyped value fails here in one line rather than as an out-of-memory kill.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")


def check_float(
    name: str,
    value: object,
    *,
    low: float = 0.0,
    low_inclusive: bool = True,
    high: float = FLOAT32_MAX,
    high_inclusive: bool = True,
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number within float32's range and the bounds.

    The bounds default to ``[0, FLOAT32_MAX]``; ``high`` is clamped to :data:`FLOAT32_MAX` (and
    ``low`` to its negative), so no bound can let an unrepresentable value through.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} must be within float32's range (|x| <= {FLOAT32_MAX:.4g}), got {value!r}")
    low, high = max(low, -FLOAT32_MAX), min(high, FLOAT32_MAX)
    too_low = value < low if low_inclusive else value <= low
    too_high = value > high if high_inclusive else value >= high
    if too_low or too_high:
        if high == FLOAT32_MAX and high_inclusive:
            raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low:g}, got {value!r}")
        lower, upper = "[" if low_inclusive else "(", "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lower}{low:g}, {high:g}{upper}, got {value!r}")
