"""Both wheels build, share the ``esper`` namespace, and install side by side in a clean venv.

Slow (two builds, a venv and an install of torch from uv's cache), so it is marked ``slow``; CI runs it
in its own step. The installed packages are imported from a working directory outside the repository
so nothing can leak in from the workspace sources.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"tamiyo": ROOT / "packages" / "esper-tamiyo", "simic": ROOT / "packages" / "esper-simic"}
RUNTIME_DEPS = {"torch", "numpy", "typing-extensions"}

#: Runs inside the fresh venv; prints one JSON object.
PROBE = """
import importlib.metadata as md, importlib.util, json, sys
import esper, esper.simic, esper.tamiyo.contract as contract
out = {
    "prefix": sys.prefix,
    "tamiyo_file": contract.__file__,
    "simic_file": esper.simic.__file__,
    "esper_file": getattr(esper, "__file__", None),
    "esper_paths": sorted(esper.__path__),
    "feature_size": contract.feature_size(3),
    "top_level_tamiyo": importlib.util.find_spec("tamiyo") is not None,
    "top_level_simic": importlib.util.find_spec("simic") is not None,
    "policies": sorted(ep.name for ep in md.entry_points(group="esper.policies")),
    "loaded": [],
}
from esper.tamiyo.policy import PolicyBundle, create_policy
for ep in md.entry_points(group="esper.policies"):
    policy = create_policy(ep.name)
    out["loaded"].append([ep.name, type(policy).__name__, isinstance(policy, PolicyBundle)])
for name in ("tamiyo", "simic"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        out[f"import_{name}_fails"] = True
    else:
        out[f"import_{name}_fails"] = False
print(json.dumps(out))
"""


def _run(cmd: list[str | Path], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def _source_files(src: Path, package: str) -> set[str]:
    """Files the wheel must carry: every non-cache file under ``src/esper/<package>``."""
    root = src / "esper" / package
    return {
        p.relative_to(src).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _requires(metadata: str) -> dict[str, str]:
    """``{requirement name: full line}`` of the ``Requires-Dist`` lines of a METADATA file."""
    out = {}
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            spec = line.split(":", 1)[1].strip()
            name = spec.split(";")[0].split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip()
            out[name.lower().replace("_", "-")] = spec
    return out


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out_dir = tmp_path_factory.mktemp("wheels")
    built = {}
    for name, package_dir in PACKAGES.items():
        _run(["uv", "build", "--wheel", "--out-dir", out_dir, package_dir], cwd=ROOT)
        (wheel,) = out_dir.glob(f"esper_{name}-*.whl")
        built[name] = wheel
    return built


def test_wheel_contents(wheels: dict[str, Path]) -> None:
    for name, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
            metadata = zf.read(f"{dist_info}/METADATA").decode()
            entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        top_level = {n.split("/")[0] for n in names}
        assert top_level == {"esper", dist_info}, f"{wheel.name}: unexpected top level {top_level}"
        assert "tamiyo" not in top_level and "simic" not in top_level
        assert "esper/__init__.py" not in names, f"{wheel.name} must not own the esper namespace"
        payload = {n for n in names if not n.startswith(dist_info)}
        assert all(n.startswith(f"esper/{name}/") for n in payload), sorted(payload)
        src = PACKAGES[name] / "src"
        assert _source_files(src, name) <= payload, sorted(_source_files(src, name) - payload)
        assert f"esper/{name}/py.typed" in payload
        requires = _requires(metadata)
        extras = {"gymnasium": "gym", "matplotlib": "plot", "tensorboard": "tensorboard", "rich": "progress"}
        expected = RUNTIME_DEPS | ({"esper-tamiyo", *extras} if name == "simic" else set())
        assert set(requires) == expected, requires
        if name == "simic":
            for package, extra in extras.items():
                assert f"extra == '{extra}'" in requires[package], f"{package} must stay the optional extra '{extra}'"
            assert "esper-train = esper.simic.cli:main" in entry_points
        else:
            assert "[esper.policies]" in entry_points


def test_digits_data_ships(wheels: dict[str, Path]) -> None:
    data_dir = PACKAGES["simic"] / "src" / "esper" / "simic" / "env" / "data"
    data_files = sorted(data_dir.glob("*.npz"))
    assert [p.name for p in data_files] == ["digits.npz"]
    with zipfile.ZipFile(wheels["simic"]) as zf:
        names = set(zf.namelist())
        for path in data_files:
            member = f"esper/simic/env/data/{path.name}"
            assert member in names
            assert zf.getinfo(member).file_size == path.stat().st_size


def test_wheels_install_side_by_side_in_a_clean_venv(wheels: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(["uv", "venv", "--python", sys.executable, venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(["uv", "pip", "install", "--python", python, wheels["tamiyo"], wheels["simic"]], cwd=tmp_path)

    probe = json.loads(_run([python, "-c", PROBE], cwd=tmp_path).stdout)
    site = Path(probe["prefix"])
    assert Path(probe["tamiyo_file"]).is_relative_to(site), probe["tamiyo_file"]
    assert Path(probe["simic_file"]).is_relative_to(site), probe["simic_file"]
    assert probe["esper_file"] is None, "esper must be an implicit namespace package"
    assert all(Path(p).is_relative_to(site) for p in probe["esper_paths"])
    assert probe["feature_size"] == 116
    assert not probe["top_level_tamiyo"] and not probe["top_level_simic"]
    assert probe["import_tamiyo_fails"] and probe["import_simic_fails"]
    assert set(probe["policies"]) == {"lstm", "mlp", "heuristic"}, "only the built-ins are installed"
    # every built-in bundle builds from the installed copy through its entry point
    assert sorted(probe["loaded"]) == [
        ["heuristic", "HeuristicPolicyBundle", True],
        ["lstm", "LSTMPolicyBundle", True],
        ["mlp", "MLPPolicyBundle", True],
    ]

    script = venv / "bin" / "esper-train"
    assert script.is_file() and os.access(script, os.X_OK)
    help_text = _run([script, "--help"], cwd=tmp_path, timeout=300).stdout
    assert "usage" in help_text.lower()
