"""Actions the environment tests script by hand, built from the contract's action space."""

from __future__ import annotations

from esper.tamiyo.contract import morphogenetic_action_space

_SPACE = morphogenetic_action_space()

WAIT: dict[str, int] = dict(zip(_SPACE.head_names, _SPACE.placeholders, strict=True))
"""Op WAIT with every other head at its canonical placeholder (what a masked policy sends)."""
