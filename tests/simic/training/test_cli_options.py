"""Command-line options generated from config dataclasses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from esper.simic.training.options import add_options, collect_options, given_values, plain_text


@dataclass(frozen=True, slots=True)
class Env:
    episode_length: int = 40
    """Epochs per episode."""
    gamma: float = 0.99
    """Discount."""
    slot_ids: tuple[str, ...] = ("r0c0",)
    """Enabled slots."""
    impaired: bool = True
    """Impaired host."""


@dataclass(frozen=True, slots=True)
class Ppo:
    gamma: float = 0.99
    """Discount of PPO."""
    target_kl: float | None = 0.015
    """KL target."""
    floors: dict[str, float] = field(default_factory=dict)
    """Per-head floors."""


@dataclass(frozen=True, slots=True)
class Run:
    num_envs: int = 4
    """Envs in lockstep."""
    mode: Literal["off", "default"] = "off"
    """Compile mode: ``off`` or ``default`` (see :func:`~torch.compile`)."""
    env: Env = field(default_factory=Env)
    ppo: Ppo = field(default_factory=Ppo)


def _parse(argv: list[str]) -> tuple[dict[str, object], list]:
    options = collect_options(Run, renames={"slot_ids": "slots"}, aliases={"num_envs": ("--envs",)})
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_options(parser, options)
    return given_values(parser.parse_args(argv), options), options


def test_flags_follow_field_names_with_help_from_docstrings() -> None:
    _, options = _parse([])
    by_flag = {o.flag: o for o in options}
    assert set(by_flag) == {
        "--num-envs",
        "--mode",
        "--episode-length",
        "--gamma",
        "--slots",
        "--impaired",
        "--target-kl",
        "--floors",
    }
    assert by_flag["--episode-length"].help == "Epochs per episode. (default: 40)"
    assert by_flag["--gamma"].paths == (("env", "gamma"), ("ppo", "gamma"))
    assert by_flag["--mode"].help == "Compile mode: off or default (see compile). (default: off)"


@pytest.mark.parametrize(
    ("doc", "shown"),
    [
        ("Task: ``digits`` or ``cifar10`` (read from ``data_dir``).", "Task: digits or cifar10 (read from data_dir)."),
        ("Rebuilt by :class:`~esper.simic.env.EnvConfig`.", "Rebuilt by EnvConfig."),
        ("See :func:`esper.tamiyo.policy.create_policy`.", "See esper.tamiyo.policy.create_policy."),
        ("Listed by `esper-train policies`.", "Listed by 'esper-train policies'."),
        ("Plain, with 'quotes' and {\"json\": 1}.", "Plain, with 'quotes' and {\"json\": 1}."),
    ],
)
def test_help_renders_rest_markup_as_plain_text(doc: str, shown: str) -> None:
    assert plain_text(doc) == shown


def test_only_given_flags_appear_in_the_layer() -> None:
    assert _parse([])[0] == {}
    layer, _ = _parse(["--envs", "2", "--slots", "r0c1", "r0c2", "--no-impaired", "--floors", '{"op": 0.1}'])
    assert layer == {
        "num_envs": 2,
        "env": {"slot_ids": ("r0c1", "r0c2"), "impaired": False},
        "ppo": {"floors": {"op": 0.1}},
    }


def test_a_shared_flag_sets_every_section() -> None:
    assert _parse(["--gamma", "0.9"])[0] == {"env": {"gamma": 0.9}, "ppo": {"gamma": 0.9}}


@pytest.mark.parametrize("argv", [["--mode", "fast"], ["--num-envs", "two"], ["--floors", "[1]"], ["--floors", "{"]])
def test_bad_values_are_argparse_errors(argv: list[str]) -> None:
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        _parse(argv)


@dataclass(frozen=True)
class IntGamma:
    gamma: int = 1


@dataclass(frozen=True)
class Clash:
    section: IntGamma = field(default_factory=IntGamma)
    gamma: float = 0.5


def test_conflicting_types_for_one_flag_raise() -> None:
    with pytest.raises(TypeError, match="--gamma"):
        collect_options(Clash)
