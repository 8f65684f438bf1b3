"""A tiny fixed-seed run must reproduce the pinned numbers exactly (see ``tests/golden_run.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from golden_run import GOLDEN_FILE, dumps, produce


def test_golden_run_reproduces_the_pinned_numbers(tmp_path: Path) -> None:
    produced = json.loads(dumps(produce(tmp_path)))
    pinned = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    assert produced["eval"] == pinned["eval"], "evaluation changed; regenerate with scripts/update_golden.py if meant"
    assert len(produced["metrics"]) == len(pinned["metrics"])
    for got, want in zip(produced["metrics"], pinned["metrics"], strict=True):
        assert got == want, f"round {want['round']} changed; regenerate with scripts/update_golden.py if meant"
