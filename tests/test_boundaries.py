"""Package boundary: an AST scan of every source file of both distributions.

- Code under ``esper.simic`` may import from ``esper.tamiyo`` only ``esper.tamiyo.contract`` (and its
  submodules) and the package ``esper.tamiyo.policy`` itself, never a submodule of it (``policy.lstm``)
  nor anything else (``esper.tamiyo.networks``).
- Code under ``esper.tamiyo`` never imports ``esper.simic``.

Every import form counts: ``import x``, ``from x import y``, ``from esper.tamiyo import networks``,
relative imports, ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name,
and imports under ``if TYPE_CHECKING:``. The checker is tested on synthetic sources so the rule
can demonstrably fail. Also checked: ``esper`` is the only namespace package (every code directory
below it has an ``__init__.py``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIMIC_SRC = ROOT / "packages" / "esper-simic" / "src"
TAMIYO_SRC = ROOT / "packages" / "esper-tamiyo" / "src"
POLICY_PACKAGE = "esper.tamiyo.policy"
CONTRACT_PACKAGE = "esper.tamiyo.contract"
DYNAMIC_IMPORTERS = {"import_module", "__import__"}


@dataclass(frozen=True, slots=True)
class ImportRef:
    """One import: ``module`` is absolute; ``name`` is the imported name of a ``from`` import (else None)."""

    module: str
    name: str | None
    lineno: int


def module_name(path: Path, src: Path) -> tuple[str, bool]:
    """Dotted module name of ``path`` under ``src`` and whether it is a package ``__init__``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _resolve(module: str | None, level: int, current: str, is_package: bool) -> str:
    """Absolute module of ``from <'.' * level><module> import ...`` written in ``current``."""
    if level == 0:
        assert module is not None
        return module
    package = current.split(".") if is_package else current.split(".")[:-1]
    if level - 1 >= len(package):
        raise ValueError(f"relative import beyond the top-level package in {current} (level {level})")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(source: str, current: str, *, is_package: bool = False) -> Iterator[ImportRef]:
    """Every import in ``source`` (the module ``current``), with relative imports made absolute."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield ImportRef(alias.name, None, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, current, is_package)
            for alias in node.names:
                yield ImportRef(base, alias.name, node.lineno)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if called in DYNAMIC_IMPORTERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield ImportRef(first.value, None, node.lineno)


def _target(ref: ImportRef, policy_submodules: Collection[str]) -> str:
    """The module an import really reaches.

    ``from esper import tamiyo`` / ``from esper.tamiyo import networks`` reach the named submodule;
    ``from esper.tamiyo.policy import X`` reaches the submodule ``X`` only when ``X`` is one.
    """
    if ref.name is None or ref.name == "*":
        return ref.module
    if ref.module in ("esper", "esper.tamiyo"):
        return f"{ref.module}.{ref.name}"
    if ref.module == POLICY_PACKAGE and ref.name in policy_submodules:
        return f"{ref.module}.{ref.name}"
    return ref.module


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def simic_violation(ref: ImportRef, policy_submodules: Collection[str]) -> str | None:
    """Why ``ref`` (in esper.simic) crosses the boundary, or None when it is allowed."""
    target = _target(ref, policy_submodules)
    if not _within(target, "esper.tamiyo"):
        return None
    if _within(target, CONTRACT_PACKAGE) or target == POLICY_PACKAGE:
        return None
    return f"imports {target} (only {CONTRACT_PACKAGE}[.*] and {POLICY_PACKAGE} are allowed)"


def tamiyo_violation(ref: ImportRef, policy_submodules: Collection[str]) -> str | None:
    """Why ``ref`` (in esper.tamiyo) crosses the boundary, or None when it is allowed."""
    target = _target(ref, policy_submodules)
    return f"imports {target} (esper.tamiyo must never import esper.simic)" if _within(target, "esper.simic") else None


Rule = Callable[[ImportRef, Collection[str]], "str | None"]


def check_source(
    source: str, current: str, rule: Rule, *, is_package: bool = False, policy_submodules: Collection[str] = ()
) -> list[str]:
    """``"line N: <reason>"`` for each forbidden import in ``source``."""
    found = []
    for ref in imports_of(source, current, is_package=is_package):
        reason = rule(ref, policy_submodules)
        if reason is not None:
            found.append(f"line {ref.lineno}: {reason}")
    return found


def check_tree(src: Path, rule: Rule, policy_submodules: Collection[str] = ()) -> tuple[list[str], int]:
    """Violations (``"path:line N: reason"``, path relative to ``src``) in every ``.py`` file under ``src``.

    Also returns the number of files scanned, so a test can tell "clean" from "found nothing to scan".
    """
    violations: list[str] = []
    files = sorted(src.rglob("*.py"))
    for path in files:
        current, is_package = module_name(path, src)
        source = path.read_text(encoding="utf-8")
        found = check_source(source, current, rule, is_package=is_package, policy_submodules=policy_submodules)
        violations += [f"{path.relative_to(src)}:{v}" for v in found]
    return violations, len(files)


def policy_submodules(src: Path = TAMIYO_SRC) -> set[str]:
    """Names of the submodules and subpackages of ``esper.tamiyo.policy`` found on disk."""
    policy_dir = src / "esper" / "tamiyo" / "policy"
    names = {p.stem for p in policy_dir.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in policy_dir.iterdir() if (p / "__init__.py").is_file()}
    return names


# --- the real trees ---------------------------------------------------------------------------


def test_simic_imports_only_contract_and_policy_api() -> None:
    violations, scanned = check_tree(SIMIC_SRC, simic_violation, policy_submodules())
    assert scanned >= 1
    assert violations == []


def test_tamiyo_never_imports_simic() -> None:
    violations, scanned = check_tree(TAMIYO_SRC, tamiyo_violation, policy_submodules())
    assert scanned >= 7  # the contract alone has 7 modules
    assert violations == []


def test_neither_distribution_ships_a_namespace_init() -> None:
    """``esper`` is an implicit namespace package shared by both wheels."""
    assert not (SIMIC_SRC / "esper" / "__init__.py").exists()
    assert not (TAMIYO_SRC / "esper" / "__init__.py").exists()


@pytest.mark.parametrize("package_dir", [SIMIC_SRC / "esper" / "simic", TAMIYO_SRC / "esper" / "tamiyo"])
def test_only_esper_is_a_namespace_package(package_dir: Path) -> None:
    """A code directory without ``__init__.py`` becomes a stray namespace package (imports fail oddly)."""
    code_dirs = {p.parent for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(d.relative_to(ROOT)) for d in code_dirs if not (d / "__init__.py").is_file())
    assert missing == []


def test_scanner_sees_real_imports() -> None:
    """Guard against a scanner that silently finds nothing: the contract imports its own modules."""
    path = TAMIYO_SRC / "esper" / "tamiyo" / "contract" / "masks.py"
    refs = list(imports_of(path.read_text(encoding="utf-8"), "esper.tamiyo.contract.masks"))
    assert any(r.module == "esper.tamiyo.contract.stages" for r in refs)


# --- the checker itself must be able to fail --------------------------------------------------

SIMIC_MODULE = "esper.simic.env.host"
SUBMODULES = {"lstm", "mlp", "heuristic", "registry", "factory", "protocol", "results"}

SIMIC_FORBIDDEN = [
    "import esper.tamiyo.networks",
    "import esper.tamiyo.networks.lstm as net",
    "import esper.tamiyo",
    "import esper.tamiyo.policy.lstm",
    "from esper.tamiyo.networks import FactoredLSTM",
    "from esper.tamiyo.policy.lstm import LSTMPolicyBundle",
    "from esper.tamiyo.policy.registry import PolicyRegistry",
    "from esper.tamiyo.policy import lstm",
    "from esper.tamiyo.policy import PolicyBundle, mlp",
    "from esper.tamiyo import networks",
    "from esper.tamiyo import contract, networks",
    "from esper import tamiyo",
    "from ...tamiyo.networks import FactoredLSTM",
    "from ...tamiyo import networks",
    "from ... import tamiyo",
    "import importlib\nimportlib.import_module('esper.tamiyo.networks')",
    "from importlib import import_module\nimport_module('esper.tamiyo.policy.lstm')",
    "__import__('esper.tamiyo.networks')",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from esper.tamiyo.networks import X",
    "def f():\n    from esper.tamiyo.networks import X\n    return X",
]

SIMIC_ALLOWED = [
    "import esper.tamiyo.contract",
    "import esper.tamiyo.contract.masks as masks",
    "import esper.tamiyo.policy",
    "from esper.tamiyo.contract import SlotConfig, compute_action_masks",
    "from esper.tamiyo.contract.observation import ObservationLayout",
    "from esper.tamiyo.policy import PolicyBundle, create_policy, ActionResult",
    "from esper.tamiyo.policy import *",
    "from esper.tamiyo import contract, policy",
    "from ...tamiyo.contract import SlotConfig",
    "from ...tamiyo import policy",
    "from . import rewards",
    "from ..agent import buffer",
    "from esper.simic.env import config",
    "import torch\nimport numpy as np",
    "importlib.import_module('esper.tamiyo.contract.masks')",
    "importlib.import_module(name)",
]


@pytest.mark.parametrize("source", SIMIC_FORBIDDEN)
def test_simic_rule_fails_on_forbidden_import(source: str) -> None:
    found = check_source(source, SIMIC_MODULE, simic_violation, policy_submodules=SUBMODULES)
    assert len(found) == 1, found
    assert "esper.tamiyo" in found[0]


@pytest.mark.parametrize("source", SIMIC_ALLOWED)
def test_simic_rule_accepts_allowed_import(source: str) -> None:
    assert check_source(source, SIMIC_MODULE, simic_violation, policy_submodules=SUBMODULES) == []


def test_violation_reports_line_and_target() -> None:
    source = "import torch\n\nfrom esper.tamiyo.contract import SlotConfig\nfrom esper.tamiyo import networks\n"
    assert check_source(source, SIMIC_MODULE, simic_violation) == [
        "line 4: imports esper.tamiyo.networks (only esper.tamiyo.contract[.*] and esper.tamiyo.policy are allowed)"
    ]


@pytest.mark.parametrize(
    ("source", "current", "is_package"),
    [
        ("import esper.simic", "esper.tamiyo.policy.factory", False),
        ("import esper.simic.env.host", "esper.tamiyo.policy.factory", False),
        ("from esper.simic.env import MorphogeneticEnv", "esper.tamiyo.policy.factory", False),
        ("from esper import simic", "esper.tamiyo.policy.factory", False),
        ("from ...simic import env", "esper.tamiyo.policy.factory", False),
        ("from ..simic.env import VectorEnv", "esper.tamiyo", True),
        ("importlib.import_module('esper.simic.cli')", "esper.tamiyo.policy.registry", False),
    ],
)
def test_tamiyo_rule_fails_on_simic_import(source: str, current: str, is_package: bool) -> None:
    found = check_source(source, current, tamiyo_violation, is_package=is_package)
    assert len(found) == 1 and "esper.simic" in found[0], found


@pytest.mark.parametrize(
    "source",
    [
        "from esper.tamiyo.contract import SlotConfig",
        "from . import registry",
        "from .. import contract",
        "import torch",
    ],
)
def test_tamiyo_rule_accepts_internal_imports(source: str) -> None:
    assert check_source(source, "esper.tamiyo.policy.factory", tamiyo_violation) == []


def test_relative_import_resolution() -> None:
    assert _resolve("contract", 2, "esper.tamiyo.policy.factory", False) == "esper.tamiyo.contract"
    assert _resolve(None, 1, "esper.tamiyo.policy", True) == "esper.tamiyo.policy"
    assert _resolve("stages", 1, "esper.tamiyo.contract.masks", False) == "esper.tamiyo.contract.stages"
    assert _resolve(None, 3, "esper.simic.env.host", False) == "esper"
    with pytest.raises(ValueError, match="beyond the top-level package"):
        _resolve("x", 4, "esper.simic.env.host", False)


def test_check_tree_fails_on_a_planted_forbidden_file(tmp_path: Path) -> None:
    """The directory scan used on the real tree flags a file that imports a concrete bundle."""
    package = tmp_path / "esper" / "simic" / "training"
    package.mkdir(parents=True)
    (tmp_path / "esper" / "simic" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from .loop import train\n")
    (package / "loop.py").write_text(
        "from esper.tamiyo.policy import create_policy\nfrom esper.tamiyo.policy.lstm import LSTMPolicyBundle\n"
    )
    violations, scanned = check_tree(tmp_path, simic_violation, SUBMODULES)
    assert scanned == 3
    reason = "imports esper.tamiyo.policy.lstm (only esper.tamiyo.contract[.*] and esper.tamiyo.policy are allowed)"
    assert violations == [f"{Path('esper', 'simic', 'training', 'loop.py')}:line 2: {reason}"]


def test_module_name() -> None:
    assert module_name(SIMIC_SRC / "esper" / "simic" / "__init__.py", SIMIC_SRC) == ("esper.simic", True)
    assert module_name(SIMIC_SRC / "esper" / "simic" / "env" / "host.py", SIMIC_SRC) == ("esper.simic.env.host", False)


def test_policy_submodules_on_disk() -> None:
    names = policy_submodules()
    assert {"protocol", "results"} <= names
    assert "__init__" not in names
