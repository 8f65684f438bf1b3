"""Fake installed distributions for plugin tests: a ``*.dist-info`` folder that advertises ``esper.policies``.

Put ``root`` on ``sys.path`` (``monkeypatch.syspath_prepend``) and ``importlib.metadata`` sees the
distribution exactly as it sees a ``pip install``-ed one: its name, version and entry points.
"""

from __future__ import annotations

from pathlib import Path


def make_distribution(root: Path, dist: str, entry_points: dict[str, str]) -> None:
    """Write ``root/<dist>-1.0.dist-info`` advertising ``{name: "module:attr"}`` in ``esper.policies``."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[esper.policies]\n{lines}\n")
