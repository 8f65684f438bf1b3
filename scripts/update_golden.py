"""Regenerate ``tests/golden/golden_run.json`` after a change that is meant to alter a run's numbers.

    uv run python scripts/update_golden.py

Prints a JSON line saying whether the pinned numbers changed. Commit the file together with the
change that explains why they moved.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from golden_run import GOLDEN_FILE, dumps, produce


def main() -> None:
    before = GOLDEN_FILE.read_text(encoding="utf-8") if GOLDEN_FILE.exists() else None
    with tempfile.TemporaryDirectory() as work_dir:
        text = dumps(produce(Path(work_dir)))
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN_FILE.write_text(text, encoding="utf-8")
    print(json.dumps({"file": str(GOLDEN_FILE), "changed": before != text}))


if __name__ == "__main__":
    main()
