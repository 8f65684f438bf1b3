"""Reflection over frozen config dataclasses: field docstrings, plain-dict round trips, type coercion.

One object is config, documentation and CLI at once (the CleanRL/tyro idea without the
dependency): each field's docstring (the string literal under it) is read from the class source
and becomes its ``--help`` text; dicts from JSON/TOML files are checked key by key against the
fields (unknown keys rejected by name) and coerced to the annotated types, so every value still
goes through the dataclass's own ``__post_init__`` validation.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, cast

T = TypeVar("T")


class ConfigKeyError(ValueError):
    """A config mapping has a key that is not a field (or a value of the wrong type); names the key."""


def field_docs(cls: type) -> dict[str, str]:
    """``{field: first paragraph of its docstring}`` for a dataclass whose fields carry docstrings.

    Fields without a docstring (or a class whose source is unavailable) map to ``""``. Parsing a
    class's source takes milliseconds and every parser build reads every config class, so the
    result is cached per class (a copy is returned: callers may change it).
    """
    return dict(_field_docs(cls))


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    docs = {f.name: "" for f in dataclasses.fields(cls)}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return docs
    body = ast.parse(source).body[0]
    if not isinstance(body, ast.ClassDef):
        return docs
    statements = body.body
    for stmt, following in itertools.pairwise(statements):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if (
            stmt.target.id in docs
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            paragraph = inspect.cleandoc(following.value.value).split("\n\n")[0]
            docs[stmt.target.id] = " ".join(paragraph.split())
    return docs


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def is_dataclass_type(tp: Any) -> bool:
    """Whether ``tp`` is a dataclass *class* (a nested config section)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def to_plain(value: Any) -> Any:
    """JSON/TOML-ready copy: dataclasses → dicts, tuples → lists, enums → their value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def from_plain(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping; nested dataclass fields take nested mappings.

    Raises:
        ConfigKeyError: an unknown key (listing the valid ones) or a value of the wrong type.
        ValueError / TypeError: from the dataclass's own validation.
    """
    if not isinstance(data, Mapping):
        raise ConfigKeyError(f"config section {where or '<root>'!r} must be a table/object, got {data!r}")
    types_ = field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigKeyError(
            f"unknown config key(s) {[_join(where, k) for k in unknown]}; "
            f"valid keys{' in ' + repr(where) if where else ''}: {sorted(types_)}"
        )
    kwargs = {name: coerce(value, types_[name], key=_join(where, name)) for name, value in data.items()}
    return cls(**kwargs)


def coerce(value: Any, tp: Any, *, key: str) -> Any:
    """Convert a JSON/TOML value to type ``tp`` (int, float, bool, str, Literal, tuple, dict, Optional, dataclass)."""
    if is_dataclass_type(tp):
        return from_plain(tp, value, where=key)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), key=key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigKeyError(f"config key {key!r} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigKeyError(f"config key {key!r} expects a list, got {value!r}")
        args = typing.get_args(tp)
        item_type = args[0] if args else Any
        return tuple(coerce(v, item_type, key=key) for v in value)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigKeyError(f"config key {key!r} expects a table/object, got {value!r}")
        return dict(value)
    if tp in _SCALARS:
        return _coerce_scalar(value, tp, key=key)
    return value


def _coerce_union(value: Any, options: tuple[Any, ...], *, key: str) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return coerce(value, option, key=key)
        except ConfigKeyError as exc:
            errors.append(str(exc))
    raise ConfigKeyError(errors[0] if len(errors) == 1 else f"config key {key!r}: no type of {options} fits {value!r}")


#: Scalar type → (accepted Python types, description for the error message). bool is an int
#: subclass in Python, so it is rejected explicitly for int and float.
_SCALARS: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true/false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
}


def _coerce_scalar(value: Any, tp: type, *, key: str) -> Any:
    accepted, description = _SCALARS[tp]
    if not isinstance(value, accepted) or (tp is not bool and isinstance(value, bool)):
        raise ConfigKeyError(f"config key {key!r} expects {description}, got {value!r}")
    return float(cast(float, value)) if tp is float else value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
