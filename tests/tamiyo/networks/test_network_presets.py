"""Named network sizes and how explicit widths override them."""

from __future__ import annotations

import pytest

from esper.tamiyo.networks import NETWORK_PRESETS, NetworkSize, resolve_network_size
from esper.tamiyo.networks.presets import MAX_NETWORK_WIDTH


def test_presets() -> None:
    assert NETWORK_PRESETS["default"] == NetworkSize(128, 128)
    assert NETWORK_PRESETS["reference"] == NetworkSize(512, 512)
    assert resolve_network_size(None, None, None) == NetworkSize(128, 128)


def test_explicit_widths_take_precedence_over_the_preset() -> None:
    assert resolve_network_size("reference", None, 64) == NetworkSize(512, 64)
    assert resolve_network_size(None, 32, None) == NetworkSize(32, 128)


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="known presets: \\['default', 'reference'\\]"):
        resolve_network_size("huge", None, None)
    with pytest.raises(ValueError, match="lstm_hidden must be >= 2"):
        NetworkSize(128, 1)
    with pytest.raises(TypeError):
        NETWORK_PRESETS["mine"] = NetworkSize()  # type: ignore[index]


def test_widths_have_a_documented_maximum() -> None:
    """Checked before any layer is built: a mistyped width fails at once instead of allocating gigabytes."""
    assert NetworkSize(MAX_NETWORK_WIDTH, MAX_NETWORK_WIDTH).hidden_size == MAX_NETWORK_WIDTH == 8192
    with pytest.raises(ValueError, match=r"^hidden_size must be <= 8192, got 100000000$"):
        resolve_network_size(None, 100_000_000, None)
    with pytest.raises(ValueError, match=r"^lstm_hidden must be <= 8192, got 8193$"):
        NetworkSize(128, 8193)


@pytest.mark.parametrize("width", ["x", 64.0, True, None])
def test_non_integer_widths_are_rejected_by_name(width: object) -> None:
    with pytest.raises(TypeError, match="hidden_size must be an int"):
        NetworkSize(width, 128)  # type: ignore[arg-type]
