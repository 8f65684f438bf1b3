"""PolicyRegistry: validation, duplicates, unknown names, and entry-point plugins (real distributions)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from plugin_distributions import make_distribution

from esper.tamiyo.contract import SlotConfig
from esper.tamiyo.policy import (
    PROTOCOL_MEMBERS,
    PolicyBundle,
    PolicyInfo,
    PolicyLoadError,
    PolicyRegistry,
    UnknownPolicyError,
    create_policy,
    default_registry,
    get_policy_class,
    validate_policy_class,
)
from esper.tamiyo.policy.heuristic import HeuristicPolicyBundle


class _Partial:
    """Has only a few protocol members."""

    def get_action(self) -> None: ...

    def to(self) -> None: ...


class _NotCallable(HeuristicPolicyBundle):
    get_action = 3  # type: ignore[assignment]


class _Custom(HeuristicPolicyBundle):
    """A valid bundle registered in code."""


def test_register_rejects_a_class_missing_members_and_names_them() -> None:
    registry = PolicyRegistry(group=None)
    with pytest.raises(TypeError) as info:
        registry.register("partial", _Partial)
    message = str(info.value)
    assert "_Partial" in message
    missing = [m for m in PROTOCOL_MEMBERS if m not in ("get_action", "to")]
    assert f"missing members: {', '.join(missing)}" in message
    assert "partial" not in registry


def test_register_rejects_non_callable_methods_and_non_classes() -> None:
    with pytest.raises(TypeError, match="not callable: get_action"):
        validate_policy_class(_NotCallable)
    with pytest.raises(TypeError, match="must be registered as a class"):
        validate_policy_class(HeuristicPolicyBundle(slot_config=SlotConfig()))


def test_decorator_registers_and_duplicates_raise() -> None:
    registry = PolicyRegistry(group=None)

    @registry.register_policy("custom")
    class Decorated(HeuristicPolicyBundle):
        pass

    assert registry.get_policy_class("custom") is Decorated
    with pytest.raises(ValueError, match="'custom' is already registered"):
        registry.register("custom", _Custom)
    with pytest.raises(ValueError, match="non-empty"):
        registry.register("  ", _Custom)
    assert registry.list_policies() == (PolicyInfo("custom", "<registered>", f"{__name__}:{Decorated.__qualname__}"),)


def test_unknown_name_lists_known_names_and_a_close_match() -> None:
    registry = PolicyRegistry(group=None)
    registry.register("heuristic", HeuristicPolicyBundle)
    registry.register("custom", _Custom)
    with pytest.raises(UnknownPolicyError) as info:
        registry.get_policy_class("heuristik")
    assert str(info.value) == "unknown policy 'heuristik'; did you mean 'heuristic'? Known policies: custom, heuristic"
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownPolicyError, match=r"^unknown policy 'zzz'\. Known policies: custom, heuristic$"):
        registry.get_policy_class("zzz")


def test_builtins_and_the_example_plugin_come_from_entry_points() -> None:
    infos = {info.name: info for info in PolicyRegistry().list_policies()}
    for name in ("lstm", "mlp", "heuristic"):
        assert infos[name].source.startswith("esper-tamiyo "), infos[name]
    assert infos["heuristic"] == PolicyInfo(
        "heuristic", infos["heuristic"].source, "esper.tamiyo.policy.heuristic:HeuristicPolicyBundle"
    )
    assert infos["example-gru"].source.startswith("esper-policy-example ")
    assert infos["example-gru"].target == "esper_policy_example.gru:GRUPolicyBundle"
    assert all(info.ok for info in infos.values()), [i for i in infos.values() if not i.ok]


def test_default_registry_resolves_builtins() -> None:
    assert get_policy_class("heuristic") is HeuristicPolicyBundle
    assert "lstm" in default_registry


# --- a real distribution on a temporary sys.path entry ------------------------------------------

_PLUGIN_MODULE = """
from esper.tamiyo.policy.heuristic import HeuristicPolicyBundle


class TmpPolicy(HeuristicPolicyBundle):
    '''A plugin bundle (reuses the heuristic's behaviour).'''


class NotAPolicy:
    def get_action(self):
        return None
"""


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A plugin module plus a distribution advertising one good and two broken entry points.

    Returns the module name (unique per test, so ``sys.modules`` never leaks between tests).
    """
    module = f"esper_tmp_plugin_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(_PLUGIN_MODULE))
    make_distribution(
        tmp_path,
        "esper-tmp-plugin",
        {
            "tmp-policy": f"{module}:TmpPolicy",
            "broken-import": f"{module}_missing:Nope",
            "broken-class": f"{module}:NotAPolicy",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    yield module
    sys.modules.pop(module, None)


def test_plugin_distribution_is_discovered_and_built_by_create_policy(plugin_path: str) -> None:
    registry = PolicyRegistry()
    policy = create_policy("tmp-policy", registry=registry, slot_config=SlotConfig.for_count(2), topology="cnn")
    assert type(policy).__name__ == "TmpPolicy" and type(policy).__module__ == plugin_path
    assert isinstance(policy, PolicyBundle)
    assert policy.slot_config.num_slots == 2
    info = {i.name: i for i in registry.list_policies()}["tmp-policy"]
    assert info == PolicyInfo("tmp-policy", "esper-tmp-plugin 1.0", f"{plugin_path}:TmpPolicy")


def test_plugins_load_lazily(plugin_path: str) -> None:
    registry = PolicyRegistry()
    assert "tmp-policy" in registry and "broken-import" in registry
    assert plugin_path not in sys.modules  # discovery reads metadata only
    registry.get_policy_class("heuristic")
    assert plugin_path not in sys.modules
    registry.get_policy_class("tmp-policy")
    assert plugin_path in sys.modules


def test_broken_plugins_are_reported_by_name_and_do_not_break_others(plugin_path: str) -> None:
    registry = PolicyRegistry()
    with pytest.raises(PolicyLoadError) as info:
        registry.get_policy_class("broken-import")
    message = str(info.value)
    assert "'broken-import'" in message and "esper-tmp-plugin 1.0" in message
    assert f"ModuleNotFoundError: No module named '{plugin_path}_missing'" in message
    assert isinstance(info.value.cause, ModuleNotFoundError) and info.value.__cause__ is info.value.cause
    expected = r"'broken-class'.*TypeError: .*NotAPolicy does not satisfy PolicyBundle; missing members: action_space,"
    with pytest.raises(PolicyLoadError, match=expected):
        registry.get_policy_class("broken-class")
    # everything else still works, and the listing shows the broken ones with their errors
    assert registry.get_policy_class("tmp-policy").__name__ == "TmpPolicy"
    assert isinstance(create_policy("heuristic", registry=registry), HeuristicPolicyBundle)
    listing = {i.name: i for i in registry.list_policies()}
    assert listing["broken-import"].error == f"ModuleNotFoundError: No module named '{plugin_path}_missing'"
    assert listing["broken-class"].error is not None and "missing members" in listing["broken-class"].error
    assert not listing["broken-class"].ok and listing["tmp-policy"].ok and listing["heuristic"].ok


def test_names_advertised_by_entry_points_cannot_be_taken_in_code(plugin_path: str) -> None:
    """Checkpoints rebuild policies by name, so shadowing an installed policy is a duplicate."""
    registry = PolicyRegistry()
    taken = rf"'tmp-policy' is already registered by esper-tmp-plugin 1.0 \({plugin_path}:TmpPolicy\)"
    with pytest.raises(ValueError, match=taken):
        registry.register("tmp-policy", _Custom)
    with pytest.raises(ValueError, match="'lstm' is already registered by esper-tamiyo "):
        registry.register("lstm", _Custom)
    with pytest.raises(ValueError, match="'broken-import' is already registered"):
        registry.register("broken-import", _Custom)
    assert plugin_path not in sys.modules
    # the class an entry point names may register itself under that name when its module loads
    plugin = importlib.import_module(plugin_path)
    assert registry.register("tmp-policy", plugin.TmpPolicy) is plugin.TmpPolicy
    assert registry.get_policy_class("tmp-policy") is plugin.TmpPolicy
    assert registry.get_policy_class("lstm").__name__ == "LSTMPolicyBundle"


def test_two_distributions_claiming_one_name_is_an_error_naming_both(
    plugin_path: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path_factory.mktemp("other")
    make_distribution(other, "esper-rival-plugin", {"tmp-policy": "somewhere_else:Rival"})
    monkeypatch.syspath_prepend(str(other))
    registry = PolicyRegistry()
    with pytest.raises(PolicyLoadError, match=r"advertised by several distributions") as info:
        registry.get_policy_class("tmp-policy")
    assert "esper-tmp-plugin 1.0" in str(info.value) and "esper-rival-plugin 1.0" in str(info.value)
    assert registry.get_policy_class("heuristic") is HeuristicPolicyBundle


# --- plugins cannot take the process or the built-ins down with them -----------------------------


def _plugin_distribution(
    root: Path, monkeypatch: pytest.MonkeyPatch, dist: str, modules: dict[str, str], entry_points: dict[str, str]
) -> None:
    """Install ``dist`` (with ``modules`` as ``{name: source}``) on a temporary ``sys.path`` entry."""
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, module, raising=False)
    make_distribution(root, dist, entry_points)
    monkeypatch.syspath_prepend(str(root))


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ("sys.exit()", "SystemExit: the plugin called sys.exit(None) while being imported"),
        ("sys.exit(3)", "SystemExit: the plugin called sys.exit(3) while being imported"),
        ("sys.exit('no GPU')", "SystemExit: the plugin called sys.exit('no GPU') while being imported"),
    ],
)
def test_a_plugin_calling_sys_exit_at_import_is_recorded_as_broken(
    call: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plugin_distribution(
        tmp_path,
        monkeypatch,
        "esper-exiting-plugin",
        {"esper_exiting_plugin": f"import sys\n{call}\n"},
        {"exits": "esper_exiting_plugin:Bundle"},
    )
    registry = PolicyRegistry()
    listing = {info.name: info for info in registry.list_policies()}
    assert listing["exits"] == PolicyInfo("exits", "esper-exiting-plugin 1.0", "esper_exiting_plugin:Bundle", reason)
    assert listing["lstm"].ok and listing["heuristic"].ok and listing["example-gru"].ok
    with pytest.raises(PolicyLoadError) as info:
        registry.get_policy_class("exits")
    source = "esper-exiting-plugin 1.0 (esper_exiting_plugin:Bundle)"
    assert str(info.value) == f"policy 'exits' from {source} failed to load: {reason}"
    assert isinstance(info.value.cause, SystemExit)


#: Lists a fresh registry in a child interpreter, then prints a sentinel: a plugin that ends the
#: process at import would otherwise end the test run itself, with status 0 and nothing said.
_LIST_POLICIES = """
import os
from esper.tamiyo.policy import PolicyRegistry
real_exit = os._exit
for info in PolicyRegistry().list_policies():
    print(f"{info.name}|{info.error}")
print(f"os._exit restored|{os._exit is real_exit}")
print("listing complete")
"""


def test_a_plugin_calling_os_exit_at_import_is_recorded_as_broken(tmp_path: Path) -> None:
    """``os._exit`` skips every ``except`` and ``finally``; the loader turns it into a broken plugin while importing."""
    (tmp_path / "esper_hard_exit_plugin.py").write_text("import os\nos._exit(0)\n")
    make_distribution(tmp_path, "esper-hard-exit-plugin", {"hard-exit": "esper_hard_exit_plugin:Bundle"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", _LIST_POLICIES], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0 and result.stdout.endswith("listing complete\n"), (result.stdout, result.stderr)
    listing = dict(line.split("|", 1) for line in result.stdout.splitlines()[:-1])
    assert listing["hard-exit"] == "os._exit: the plugin called os._exit(0) while being imported"
    assert listing["lstm"] == listing["heuristic"] == listing["example-gru"] == "None"
    assert listing["os._exit restored"] == "True"


def test_a_keyboard_interrupt_during_a_plugin_import_still_stops_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C is the user's, not the plugin's: it is never recorded as a broken plugin."""
    _plugin_distribution(
        tmp_path,
        monkeypatch,
        "esper-slow-plugin",
        {"esper_slow_plugin": "raise KeyboardInterrupt\n"},
        {"slow": "esper_slow_plugin:Bundle"},
    )
    with pytest.raises(KeyboardInterrupt):
        PolicyRegistry().get_policy_class("slow")


@pytest.mark.parametrize("name", ["lstm", "mlp", "heuristic"])
def test_a_plugin_advertising_a_builtin_name_cannot_replace_the_builtin(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints name their policy: ``lstm`` must keep meaning esper-tamiyo's, whatever else is installed."""
    _plugin_distribution(
        tmp_path,
        monkeypatch,
        "esper-rival",
        {"esper_rival": "raise RuntimeError('must never be imported')\n"},
        {name: "esper_rival:Rival"},
    )
    registry = PolicyRegistry()
    builtin = default_registry.get_policy_class(name)
    assert builtin.__module__.startswith("esper.tamiyo.policy.")
    assert registry.get_policy_class(name) is builtin
    kwargs = {"topology": "cnn"} if name == "heuristic" else {"hidden_size": 8, "lstm_hidden": 8}
    assert type(create_policy(name, registry=registry, **kwargs)) is builtin
    rows = [info for info in registry.list_policies() if info.name == name]
    assert [row.source.split()[0] for row in rows] == ["esper-tamiyo", "esper-rival"]
    assert rows[0].ok and rows[0].target == f"{builtin.__module__}:{builtin.__qualname__}"
    assert rows[1] == PolicyInfo(
        name,
        "esper-rival 1.0",
        "esper_rival:Rival",
        f"ValueError: {name!r} is a built-in policy of {rows[0].source}; the entry point {name} = esper_rival:Rival "
        "of esper-rival 1.0 cannot replace it (rename the plugin's entry point)",
    )
    assert "esper_rival" not in sys.modules
    assert name in registry and sum(info.name == name for info in registry.list_policies()) == 2
