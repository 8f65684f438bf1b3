"""Command-line options generated from config dataclasses (the tyro idea without the dependency).

Each leaf field of a config dataclass (nested sections included) becomes one ``--flag`` whose
help is the field's docstring (its reST markup rendered as plain text) and whose parser follows
the annotation: ``int``/``float``/``str``, ``Literal`` → choices, ``bool`` → ``--x/--no-x``,
``tuple[str, ...]`` → one or more values, a mapping → a JSON object. Flags default to "not
given", so the values a user typed can be layered over a config file or a checkpoint's config
(:func:`esper.simic.training.config.merge_layers`).

A flag is derived from the field's path with its first component, the top-level section, left
out: ``env.episode_length`` → ``--episode-length``, ``env.governor.patience`` →
``--governor-patience``, ``ppo.gamma`` → ``--gamma``. Two fields deriving the same flag are a
naming bug and raise at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from esper.simic.training.dataclass_io import field_docs, field_types, is_dataclass_type, to_plain

Path = tuple[str, ...]

#: ``:class:`~pkg.mod.Name``` style cross-references (the ``~`` asks for the last component only).
_REST_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
#: ``literal`` (double backticks).
_REST_LITERAL = re.compile(r"``(.+?)``")
#: `interpreted text` (single backticks, after literals are gone).
_REST_INTERPRETED = re.compile(r"`([^`]+)`")


@dataclass(frozen=True, slots=True)
class Option:
    """One generated flag and the config field it sets."""

    flag: str
    """Primary flag, e.g. ``--governor-patience``."""
    path: Path
    """Field path it sets, e.g. ``("env", "governor", "patience")``."""
    annotation: Any
    """Resolved field type (parsing and choices follow it)."""
    help: str
    """Help text (the field docstring, plus the default)."""
    aliases: tuple[str, ...] = ()
    """Extra flags accepted for the same option (earlier or the reference's spellings)."""
    section_help: str = ""
    """Docstring of the section field holding it (``EnvConfig.governor``'s), for ``--help`` groups."""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def section(self) -> str:
        """Dotted path of the config section holding the field (``"env.governor"``; ``""`` at the top)."""
        return ".".join(self.path[:-1])


def collect_options(
    cls: type,
    *,
    renames: Mapping[str, str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    skip: frozenset[str] = frozenset(),
    prefix: Path = (),
) -> list[Option]:
    """Options for every leaf field of dataclass ``cls`` (nested dataclass fields expanded).

    Args:
        renames: dotted field path → flag stem (``{"out_dir": "out"}`` gives ``--out``).
        aliases: dotted field path → extra flags (``{"env.host_training.lr": ["--host-lr"]}``).
        skip: field names (at any depth) not exposed on the command line.
        prefix: path of ``cls`` inside the root config (its first component is left out of flags).

    Raises:
        TypeError: two fields map to the same flag (a naming bug).
    """
    by_flag: dict[str, Option] = {}
    for option in _leaf_options(cls, renames or {}, aliases or {}, skip, prefix, ""):
        existing = by_flag.setdefault(option.flag, option)
        if existing is not option:
            raise TypeError(f"fields {'.'.join(existing.path)} and {'.'.join(option.path)} both map to {option.flag}")
    return list(by_flag.values())


def _leaf_options(
    cls: type,
    renames: Mapping[str, str],
    aliases: Mapping[str, Sequence[str]],
    skip: frozenset[str],
    prefix: Path,
    section_help: str,
) -> list[Option]:
    docs = field_docs(cls)
    defaults = {f.name: _default_of(f) for f in dataclasses.fields(cls)}
    options: list[Option] = []
    for name, annotation in field_types(cls).items():
        if name in skip:
            continue
        path = (*prefix, name)
        if is_dataclass_type(annotation):
            options += _leaf_options(annotation, renames, aliases, skip, path, plain_text(docs[name]))
            continue
        dotted = ".".join(path)
        flag = "--" + renames.get(dotted, "-".join(path[1:] or path)).replace("_", "-")
        default = defaults[name]
        shown = "" if default is dataclasses.MISSING else f" (default: {_show(default)})"
        help_text = plain_text(docs[name]) + shown
        options.append(Option(flag, path, annotation, help_text, tuple(aliases.get(dotted, ())), section_help))
    return options


def plain_text(doc: str) -> str:
    """A field docstring's reST inline markup as terminal text for ``--help``.

    A literal in double backticks loses them; single-backtick interpreted text is quoted
    (``'esper-train policies'``); a role such as ``:class:`~esper.simic.env.EnvConfig``` becomes
    its target (``EnvConfig`` with ``~``, the full dotted name without). argparse prints help
    verbatim, so the markup would otherwise show.
    """
    text = _REST_ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), doc)
    text = _REST_LITERAL.sub(r"\1", text)
    return _REST_INTERPRETED.sub(r"'\1'", text)


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _show(value: Any) -> str:
    plain = to_plain(value)
    if isinstance(plain, (dict, list)):
        return json.dumps(plain)
    return "none" if plain is None else str(plain)


def add_option_groups(parser: argparse.ArgumentParser, options: Sequence[Option], *, top_title: str) -> None:
    """Register ``options`` on ``parser`` in one argument group per config section.

    Each group is titled by the section's dotted path (``env.governor``, which is also its table
    in a config file) and described by the section's docstring; top-level fields go under
    ``top_title``.
    """
    sections: dict[str, list[Option]] = {}
    for option in options:
        sections.setdefault(option.section, []).append(option)
    for section, members in sections.items():
        description = members[0].section_help.replace("%", "%%") or None
        add_options(parser.add_argument_group(section or top_title, description), members)


def add_options(parser: argparse.ArgumentParser | Any, options: Sequence[Option]) -> None:
    """Register ``options`` on ``parser`` (or an argument group); every flag defaults to absent."""
    for option in options:
        kwargs: dict[str, Any] = {
            "dest": option.dest,
            "default": argparse.SUPPRESS,
            "help": option.help.replace("%", "%%"),
        }
        kwargs.update(_parse_spec(option.annotation, option.flag))
        parser.add_argument(option.flag, *option.aliases, **kwargs)


def _parse_spec(annotation: Any, flag: str) -> dict[str, Any]:
    """argparse keyword arguments (type/choices/nargs/action/metavar) for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return _parse_spec(inner[0], flag)
        raise TypeError(f"{flag}: unsupported union annotation {annotation}")
    if origin is Literal:
        choices = typing.get_args(annotation)
        return {"choices": choices, "type": type(choices[0])}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return {"nargs": "+", "type": _scalar(item, flag), "metavar": item.__name__.upper()}
    if annotation in (dict, Mapping) or origin in (dict, Mapping):
        return {"type": _json_object(flag), "metavar": "JSON"}
    return {"type": _scalar(annotation, flag), "metavar": getattr(annotation, "__name__", "VALUE").upper()}


def _scalar(tp: Any, flag: str) -> Callable[[str], Any]:
    if tp not in (int, float, str):
        raise TypeError(f"{flag}: unsupported option type {tp}")

    def parse(text: str) -> Any:
        try:
            return tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if tp is int else 'a number'}, got {text!r}"
            ) from None

    parse.__name__ = tp.__name__
    return parse


def _json_object(flag: str) -> Callable[[str], dict[str, Any]]:
    def parse(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc.msg})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
        return value

    parse.__name__ = "JSON object"
    return parse


def given_values(namespace: argparse.Namespace, options: Sequence[Option]) -> dict[str, Any]:
    """The nested config layer of the options the user actually gave (absent flags are left out)."""
    layer: dict[str, Any] = {}
    values = vars(namespace)
    for option in options:
        if option.dest not in values:
            continue
        value = values[option.dest]
        if isinstance(value, list):
            value = tuple(value)
        node = layer
        for key in option.path[:-1]:
            node = node.setdefault(key, {})
        node[option.path[-1]] = value
    return layer
