"""Command-line options generated from config dataclasses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from esper.simic.training.options import (
    Option,
    add_option_groups,
    add_options,
    collect_options,
    given_values,
    plain_text,
)


@dataclass(frozen=True, slots=True)
class Governor:
    patience: int = 2
    """Anomalies before a rollback."""
    lr: float = 0.1
    """A rate."""


@dataclass(frozen=True, slots=True)
class Env:
    episode_length: int = 40
    """Epochs per episode."""
    slot_ids: tuple[str, ...] = ("r0c0",)
    """Enabled slots."""
    impaired: bool = True
    """Impaired host."""
    governor: Governor = field(default_factory=Governor)
    """The governor section."""


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
    """The environment."""
    ppo: Ppo = field(default_factory=Ppo)
    """The agent."""


def _options() -> list[Option]:
    return collect_options(
        Run,
        renames={"env.slot_ids": "slots"},
        aliases={"num_envs": ("--envs",), "env.governor.lr": ("--governor-rate",)},
    )


def _parse(argv: list[str]) -> tuple[dict[str, object], list[Option]]:
    options = _options()
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_options(parser, options)
    return given_values(parser.parse_args(argv), options), options


def test_flags_follow_the_field_path_without_its_top_section() -> None:
    _, options = _parse([])
    by_flag = {o.flag: o for o in options}
    assert set(by_flag) == {
        "--num-envs",
        "--mode",
        "--episode-length",
        "--slots",
        "--impaired",
        "--governor-patience",
        "--governor-lr",
        "--gamma",
        "--target-kl",
        "--floors",
    }
    assert by_flag["--governor-patience"].path == ("env", "governor", "patience")
    assert by_flag["--governor-patience"].section == "env.governor"
    assert by_flag["--governor-patience"].section_help == "The governor section."
    assert by_flag["--governor-lr"].aliases == ("--governor-rate",)
    assert by_flag["--episode-length"].help == "Epochs per episode. (default: 40)"
    assert by_flag["--mode"].help == "Compile mode: off or default (see compile). (default: off)"


def test_a_section_collected_on_its_own_gets_the_same_flags() -> None:
    flags = [o.flag for o in collect_options(Env, renames={"env.slot_ids": "slots"}, prefix=("env",))]
    assert flags == ["--episode-length", "--slots", "--impaired", "--governor-patience", "--governor-lr"]


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
    layer, _ = _parse(
        [
            "--envs",
            "2",
            "--slots",
            "r0c1",
            "r0c2",
            "--no-impaired",
            "--floors",
            '{"op": 0.1}',
            "--governor-patience",
            "3",
        ]
    )
    assert layer == {
        "num_envs": 2,
        "env": {"slot_ids": ("r0c1", "r0c2"), "impaired": False, "governor": {"patience": 3}},
        "ppo": {"floors": {"op": 0.1}},
    }


def test_an_alias_sets_the_same_nested_field() -> None:
    assert _parse(["--governor-rate", "0.5"])[0] == {"env": {"governor": {"lr": 0.5}}}
    assert _parse(["--governor-lr", "0.5"])[0] == {"env": {"governor": {"lr": 0.5}}}


def test_option_groups_follow_the_config_sections() -> None:
    parser = argparse.ArgumentParser()
    add_option_groups(parser, _options(), top_title="run")
    groups = {g.title: g for g in parser._action_groups}  # argparse has no public accessor
    assert {"run", "env", "env.governor", "ppo"} <= set(groups)
    assert groups["env.governor"].description == "The governor section."
    assert [a.option_strings[0] for a in groups["env.governor"]._group_actions] == [
        "--governor-patience",
        "--governor-lr",
    ]


@pytest.mark.parametrize("argv", [["--mode", "fast"], ["--num-envs", "two"], ["--floors", "[1]"], ["--floors", "{"]])
def test_bad_values_are_argparse_errors(argv: list[str]) -> None:
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        _parse(argv)


@dataclass(frozen=True)
class Section:
    gamma: float = 0.9
    """Discount."""


@dataclass(frozen=True)
class Clash:
    gamma: float = 0.5
    """Top-level discount."""
    ppo: Section = field(default_factory=Section)
    """Leaves its name out of its flags, so its gamma is --gamma too."""


def test_two_fields_deriving_one_flag_raise() -> None:
    with pytest.raises(TypeError, match=r"fields gamma and ppo\.gamma both map to --gamma"):
        collect_options(Clash)
