"""Policy registry: names → ``PolicyBundle`` classes, with lazy ``esper.policies`` entry points.

Modelled on pluggy's ``PluginManager`` (an explicit registry object, conformance checked at
registration, the supplying distribution recorded) and Gymnasium's registry (lazy
``"module:attr"`` entry points, "did you mean" errors). Rules:

* :meth:`PolicyRegistry.register` / :meth:`PolicyRegistry.register_policy` check the class
  against :data:`~esper.tamiyo.policy.protocol.PROTOCOL_MEMBERS` at once: a ``TypeError`` names
  every missing member, and every protocol parameter a method cannot be called with (a
  ``get_action`` without ``generator=`` fails at load time, not at the trainer's first step). A
  name that is already taken, in code or by an installed distribution's entry point, raises
  ``ValueError`` naming its owner: checkpoints rebuild policies by name, so a silently shadowed
  ``lstm`` would load someone else's class. The one exception is the class an entry point names
  registering itself when its module is imported (idempotent).
* Entry points in group ``esper.policies`` are discovered on first lookup (metadata only, no
  import) and a plugin module is imported only when its name is requested, or when
  :meth:`PolicyRegistry.list_policies` needs to report on every plugin. A plugin that fails to
  import (any ``Exception``, ``SystemExit`` and ``os._exit()``: a plugin calling ``sys.exit()``
  or ``os._exit()`` at import must not end the process, so while it imports ``os._exit`` raises
  :class:`PluginOsExit`) or fails validation is recorded as ``(name, distribution, exception)``:
  asking for it raises :class:`PolicyLoadError` naming both, listing shows it with its error, and
  every other policy keeps working. It is never reduced to a log line. ``KeyboardInterrupt`` still
  propagates: it is the user's, not the plugin's. A native crash, ``os.abort()`` or a signal the
  plugin sends its own process cannot be caught.
* The built-in bundles (``lstm``, ``mlp``, ``heuristic``) are registered through the entry points
  of :data:`BUILTIN_DISTRIBUTION` (esper-tamiyo), exactly as a third-party package registers its
  own, and their names always win: another distribution advertising ``lstm`` is listed as broken
  (naming the conflict) and never imported, so installing it cannot change what an ``lstm``
  checkpoint rebuilds.
* Two third-party *distributions* that advertise the same name with different targets make that
  name unusable until one is removed (recorded as broken, naming both), because silently picking
  one would depend on ``sys.path`` order.

:data:`default_registry` is the one process-wide instance (the only module-level state); tests
build their own ``PolicyRegistry()`` and pass it as ``registry=`` to
:func:`~esper.tamiyo.policy.factory.create_policy`.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from inspect import Parameter
from typing import NoReturn, TypeVar

from esper.tamiyo.policy.protocol import PROTOCOL_MEMBERS, PolicyBundle

#: Entry-point group that policy packages advertise their bundles in.
ENTRY_POINT_GROUP = "esper.policies"
#: ``PolicyInfo.source`` of classes registered in code rather than through an entry point.
REGISTERED_IN_CODE = "<registered>"
#: Distribution whose ``esper.policies`` entry points are the built-in policies (its own
#: ``pyproject.toml`` declares them); no other distribution may take their names.
BUILTIN_DISTRIBUTION = "esper-tamiyo"

_T = TypeVar("_T", bound=type)


class PolicyRegistryError(Exception):
    """Base class of the registry's lookup errors (lets a CLI report them in one line)."""


class UnknownPolicyError(PolicyRegistryError, ValueError):
    """No policy of that name is registered or advertised by an installed distribution."""


class PolicyLoadError(PolicyRegistryError, RuntimeError):
    """A registered plugin could not be used: its import failed or its class is not a ``PolicyBundle``.

    ``name``, ``source`` (distribution) and ``cause`` (the original exception, also chained as
    ``__cause__``) are kept as attributes.
    """

    def __init__(self, name: str, source: str, target: str, cause: BaseException) -> None:
        super().__init__(f"policy {name!r} from {source} ({target}) failed to load: {_describe_error(cause)}")
        self.name = name
        self.source = source
        self.cause = cause


class PluginOsExit(BaseException):
    """Raised instead of ending the process when a plugin calls ``os._exit(code)`` while it is imported.

    A ``BaseException`` like ``SystemExit``, so the plugin's own ``except Exception`` cannot swallow
    it; ``code`` is the status the plugin asked for.
    """

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@contextlib.contextmanager
def _os_exit_raises() -> Iterator[None]:
    """While the block runs (a plugin's import), ``os._exit(code)`` raises :class:`PluginOsExit` instead.

    ``os._exit`` ends the process at once, skipping every ``except`` and ``finally``, so a plugin
    calling it at import would end ``esper-train policies`` silently, with the plugin's status.
    Only calls from this thread of this process, during the block, raise: another thread, a child
    process the import forked, and a later call through a reference the plugin kept (``from os
    import _exit``) reach the real ``os._exit``. The real function is restored when the block ends.
    """
    real_exit = os._exit
    pid, thread = os.getpid(), threading.get_ident()
    importing = True

    def guarded_exit(status: int) -> NoReturn:
        if importing and os.getpid() == pid and threading.get_ident() == thread:
            raise PluginOsExit(status)
        real_exit(status)

    os._exit = guarded_exit
    try:
        yield
    finally:
        importing = False
        os._exit = real_exit


def _describe_error(error: BaseException) -> str:
    """``"ExceptionType: message"``, the one-line reason a plugin is broken.

    ``SystemExit`` and ``os._exit`` get a sentence of their own: their message is only the exit code.
    """
    if isinstance(error, SystemExit):
        return f"SystemExit: the plugin called sys.exit({error.code!r}) while being imported"
    if isinstance(error, PluginOsExit):
        return f"os._exit: the plugin called os._exit({error.code!r}) while being imported"
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """One row of :meth:`PolicyRegistry.list_policies`."""

    name: str
    """Registry name (what ``create_policy`` and ``--policy`` take)."""
    source: str
    """Distribution that advertised the entry point, or ``"<registered>"`` for in-code registration."""
    target: str
    """``"module:attr"`` of the class."""
    error: str | None = None
    """``"ExceptionType: message"`` when the plugin is broken, else ``None``."""

    @property
    def ok(self) -> bool:
        """Whether the policy can be built."""
        return self.error is None


def _method_members() -> frozenset[str]:
    """Protocol members that are methods (the rest are properties); derived from the protocol itself."""
    return frozenset(
        name for name in PROTOCOL_MEMBERS if not isinstance(inspect.getattr_static(PolicyBundle, name), property)
    )


_METHODS = _method_members()


def _target_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _missing_parameters(spec: Callable[..., object], implementation: Callable[..., object]) -> list[str]:
    """Parameters of the protocol method ``spec`` that ``implementation`` cannot be called with.

    Trainers pass a protocol method's required arguments by position (an implementation may name
    them as it likes) and its optional and keyword-only ones by name (``hidden=``,
    ``deterministic=``, ``generator=``, ``strict=``), so those names are part of the contract.
    ``*args`` / ``**kwargs`` accept any position / name; an implementation without an
    inspectable signature is left to static typing. Both signatures start with ``self``.
    """
    try:
        parameters = list(inspect.signature(implementation).parameters.values())
    except (TypeError, ValueError):
        return []
    kinds = {p.kind for p in parameters}
    positional = [p for p in parameters if p.kind in (Parameter.POSITIONAL_ONLY, Parameter.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name for p in parameters if p.kind in (Parameter.POSITIONAL_OR_KEYWORD, Parameter.KEYWORD_ONLY)}
    missing = []
    for index, wanted in enumerate(inspect.signature(spec).parameters.values()):
        if index == 0:  # self
            continue
        if wanted.kind is Parameter.POSITIONAL_OR_KEYWORD and wanted.default is Parameter.empty:
            accepted = Parameter.VAR_POSITIONAL in kinds or index < len(positional)
        else:
            accepted = Parameter.VAR_KEYWORD in kinds or wanted.name in by_name
        if not accepted:
            missing.append(wanted.name)
    return missing


def validate_policy_class(cls: object) -> None:
    """Check that ``cls`` is a class providing every ``PolicyBundle`` member with the protocol's parameters.

    Members must be defined on the class (methods or properties), and each method must take the
    protocol method's required arguments by position and its optional ones by name (see
    :func:`_missing_parameters`); annotations are left to static typing.
    Raises ``TypeError`` naming the class and every missing or non-callable member and every
    parameter a method lacks.
    """
    if not isinstance(cls, type):
        raise TypeError(f"a policy must be registered as a class, got {cls!r} ({type(cls).__name__})")
    missing = [name for name in PROTOCOL_MEMBERS if not hasattr(cls, name)]
    methods = [name for name in sorted(_METHODS) if hasattr(cls, name)]
    not_callable = [name for name in methods if not callable(getattr(cls, name))]
    problems = []
    if missing:
        problems.append(f"missing members: {', '.join(missing)}")
    if not_callable:
        problems.append(f"not callable: {', '.join(not_callable)}")
    for name in methods:
        lacking = [] if name in not_callable else _missing_parameters(getattr(PolicyBundle, name), getattr(cls, name))
        if lacking:
            problems.append(f"{name}() lacks: {', '.join(lacking)}")
    if problems:
        raise TypeError(f"policy class {_target_of(cls)} does not satisfy PolicyBundle; {'; '.join(problems)}")


@dataclass(frozen=True, slots=True)
class _Entry:
    """Registry record: a loaded class, a pending entry point, or a recorded failure."""

    name: str
    source: str
    target: str
    cls: type | None = None
    entry_point: metadata.EntryPoint | None = None
    error: BaseException | None = None

    def info(self) -> PolicyInfo:
        error = None if self.error is None else _describe_error(self.error)
        return PolicyInfo(self.name, self.source, self.target, error)


class PolicyRegistry:
    """Names → ``PolicyBundle`` classes, from in-code registration and lazy entry points.

    Args:
        group: entry-point group to discover (``None`` turns discovery off, giving a purely
            in-memory registry).
    """

    def __init__(self, group: str | None = ENTRY_POINT_GROUP) -> None:
        self._group = group
        self._entries: dict[str, _Entry] = {}
        # Entry points refused at discovery because they advertise a built-in name (listed as broken).
        self._rejected: list[_Entry] = []
        self._discovered = group is None

    def register(self, name: str, cls: _T) -> _T:
        """Register ``cls`` under ``name`` and return it.

        Registering the very class that a working entry point of the same name advertises is a
        no-op (a plugin module that also decorates its class imports cleanly).

        Raises:
            ValueError: ``name`` is empty, or already taken in code or by an entry point (named).
            TypeError: ``cls`` does not provide every ``PolicyBundle`` member (all missing ones named).
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"policy name must be a non-empty string, got {name!r}")
        validate_policy_class(cls)
        self._discover()
        existing = self._entries.get(name)
        if existing is None:
            self._entries[name] = _Entry(name, REGISTERED_IN_CODE, _target_of(cls), cls=cls)
            return cls
        advertised_here = existing.entry_point is not None and existing.error is None
        if advertised_here and existing.target == _target_of(cls):
            return cls
        raise ValueError(
            f"policy {name!r} is already registered by {existing.source} ({existing.target}); pick another name"
        )

    def register_policy(self, name: str) -> Callable[[_T], _T]:
        """Class decorator form of :meth:`register`: ``@registry.register_policy("mine")``."""

        def decorator(cls: _T) -> _T:
            return self.register(name, cls)

        return decorator

    def get_policy_class(self, name: str) -> type[PolicyBundle]:
        """The class registered as ``name``, importing its plugin on first use.

        Raises:
            UnknownPolicyError: no such name; the message lists the known names and a close match.
            PolicyLoadError: the plugin failed to import or to validate (name, distribution, cause).
        """
        self._discover()
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownPolicyError(self._unknown_message(name))
        entry = self._load(entry)
        if entry.error is not None:
            raise PolicyLoadError(entry.name, entry.source, entry.target, entry.error) from entry.error
        assert entry.cls is not None  # a loaded entry has either a class or an error
        return entry.cls

    def list_policies(self) -> tuple[PolicyInfo, ...]:
        """Every known policy sorted by name, broken plugins included (with their error).

        Imports every not-yet-loaded plugin so that its status is known. A plugin refused for
        advertising a built-in name is listed, broken, right after the built-in of that name.
        """
        self._discover()
        rows = [self._load(self._entries[name]).info() for name in sorted(self._entries)]
        rows += [entry.info() for entry in self._rejected]
        return tuple(sorted(rows, key=lambda row: row.name))  # stable: the built-in stays first

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is known (loaded, pending or broken); imports nothing."""
        self._discover()
        return name in self._entries

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        listing = ", ".join(known) if known else "none"
        return f"unknown policy {name!r}{hint} Known policies: {listing}"

    def _discover(self) -> None:
        """Record the group's entry points (metadata only) once, before anything is registered in code."""
        if self._discovered:
            return
        self._discovered = True
        by_name: dict[str, list[metadata.EntryPoint]] = {}
        for entry_point in metadata.entry_points(group=self._group):
            by_name.setdefault(entry_point.name, []).append(entry_point)
        for name, entry_points in by_name.items():
            builtin = next((ep for ep in entry_points if _is_builtin(ep)), None)
            if builtin is None:
                self._entries[name] = _pending_entry(name, entry_points)
                continue
            self._entries[name] = _pending_entry(name, [builtin])
            self._rejected += [_shadowing_entry(name, ep, builtin) for ep in entry_points if ep.value != builtin.value]

    def _load(self, entry: _Entry) -> _Entry:
        """Import a pending entry point and validate its class; records the outcome and returns it."""
        if entry.entry_point is None or entry.cls is not None or entry.error is not None:
            return entry
        try:
            with _os_exit_raises():
                cls = entry.entry_point.load()
            validate_policy_class(cls)
        # The plugin loader is the one place allowed to catch (almost) everything: a plugin may
        # raise anything at import time, or call sys.exit() or os._exit(), and the failure is
        # recorded with its context, not hidden. KeyboardInterrupt is the user's and propagates.
        except (Exception, SystemExit, PluginOsExit) as exc:
            loaded = _Entry(entry.name, entry.source, entry.target, entry_point=entry.entry_point, error=exc)
        else:
            loaded = _Entry(entry.name, entry.source, entry.target, cls=cls, entry_point=entry.entry_point)
        self._entries[entry.name] = loaded
        return loaded


def _source_of(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return "<unknown distribution>" if dist is None else f"{dist.name} {dist.version}"


def _normalised(distribution: str) -> str:
    """PEP 503 name normalisation (``Esper_Tamiyo`` and ``esper-tamiyo`` are one distribution)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _is_builtin(entry_point: metadata.EntryPoint) -> bool:
    dist = entry_point.dist
    return dist is not None and _normalised(dist.name) == BUILTIN_DISTRIBUTION


def _shadowing_entry(name: str, entry_point: metadata.EntryPoint, builtin: metadata.EntryPoint) -> _Entry:
    """A broken record for a plugin that advertises the built-in ``name`` (it is never imported)."""
    source = _source_of(entry_point)
    conflict = ValueError(
        f"{name!r} is a built-in policy of {_source_of(builtin)}; the entry point {name} = {entry_point.value} "
        f"of {source} cannot replace it (rename the plugin's entry point)"
    )
    return _Entry(name, source, entry_point.value, error=conflict)


def _pending_entry(name: str, entry_points: list[metadata.EntryPoint]) -> _Entry:
    """A lazy entry, or a broken one when distributions disagree on what ``name`` means."""
    first = entry_points[0]
    targets = {ep.value for ep in entry_points}
    if len(targets) == 1:
        return _Entry(name, _source_of(first), first.value, entry_point=first)
    claims = "; ".join(f"{_source_of(ep)} -> {ep.value}" for ep in entry_points)
    conflict = ValueError(f"entry point {name!r} is advertised by several distributions: {claims}")
    return _Entry(name, ", ".join(_source_of(ep) for ep in entry_points), first.value, error=conflict)


#: The process-wide registry (the only one that ``esper-train`` and checkpoints use by default).
default_registry = PolicyRegistry()

#: ``@register_policy("name")`` on :data:`default_registry`.
register_policy = default_registry.register_policy
#: :meth:`PolicyRegistry.get_policy_class` on :data:`default_registry`.
get_policy_class = default_registry.get_policy_class
#: :meth:`PolicyRegistry.list_policies` on :data:`default_registry`.
list_policies = default_registry.list_policies
