"""Named network sizes: small CPU-friendly defaults and the reference esper-lite size."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

MAX_NETWORK_WIDTH = 8192
"""Widest ``hidden_size`` / ``lstm_hidden``: 16x the reference's 512. At 8,192 both, the LSTM alone has
4 * 8192 * (8192 + 8192) = 537 M weights (2.1 GB in float32, about 8.6 GB with gradients and Adam's two
moments), already far beyond what a controller of ~100 features needs; checked before any layer is built,
so a mistyped width fails in one line instead of allocating tens of gigabytes."""


@dataclass(frozen=True, slots=True)
class NetworkSize:
    """Widths of an actor-critic trunk."""

    hidden_size: int = 128
    """Width of the observation encoder (Linear → LayerNorm → ReLU); 512 in the reference; at most 8192
    (:data:`MAX_NETWORK_WIDTH`)."""
    lstm_hidden: int = 128
    """Width of the recurrent state (second trunk layer for the feed-forward net); heads use half; at most
    8192 (:data:`MAX_NETWORK_WIDTH`)."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "lstm_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        if self.lstm_hidden < 2:
            raise ValueError(f"lstm_hidden must be >= 2 (heads are lstm_hidden // 2 wide), got {self.lstm_hidden}")
        for name in ("hidden_size", "lstm_hidden"):
            if getattr(self, name) > MAX_NETWORK_WIDTH:
                raise ValueError(f"{name} must be <= {MAX_NETWORK_WIDTH}, got {getattr(self, name)}")


#: ``default`` runs fast on CPU; ``reference`` is esper-lite's 512/512 network.
NETWORK_PRESETS: MappingProxyType[str, NetworkSize] = MappingProxyType(
    {"default": NetworkSize(128, 128), "reference": NetworkSize(512, 512)}
)


def resolve_network_size(preset: str | None, hidden_size: int | None, lstm_hidden: int | None) -> NetworkSize:
    """Sizes from ``preset`` (default ``"default"``), with explicit widths taking precedence.

    Raises:
        ValueError: unknown preset name (the message lists the known ones) or a width < its minimum.
    """
    name = "default" if preset is None else preset
    if name not in NETWORK_PRESETS:
        raise ValueError(f"unknown network preset {name!r}; known presets: {sorted(NETWORK_PRESETS)}")
    base = NETWORK_PRESETS[name]
    return NetworkSize(
        base.hidden_size if hidden_size is None else hidden_size,
        base.lstm_hidden if lstm_hidden is None else lstm_hidden,
    )
