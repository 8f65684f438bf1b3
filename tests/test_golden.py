"""A tiny fixed-seed run must reproduce the pinned numbers (see ``tests/golden_run.py``).

What a run *decides* is pinned exactly: every action, stage, lifecycle event, count, episode seed
and key. Floats are pinned to a tolerance, because float kernels differ between CPUs: the same
run on an AVX-512 machine, under ``ATEN_CPU_CAPABILITY=avx2`` and under ``=default`` moves the
PPO statistics by at most 2.7e-7 absolute (``rollout_log_prob_drift`` 0.0 vs 6e-8,
``policy_loss`` in its 8th significant digit), while any change to what the code computes moves
them by orders of magnitude more. Bit-identity on one machine is the job of the determinism and
resume tests, which compare two runs made side by side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from golden_run import GOLDEN_FILE, dumps, produce

#: Relative tolerance of a pinned float: float32 kernels agree to about 1e-7 relative across CPUs.
REL_TOL = 1e-5
#: Absolute floor, for statistics that are differences of nearly equal float32 numbers of order 1
#: (approx-KL, log-prob drift): their error is float32's epsilon times the operands, not the result.
ABS_TOL = 1e-6


def assert_matches(got: Any, want: Any, path: str = "") -> None:
    """Structure, keys, lengths and every non-float exactly; floats within ``REL_TOL``/``ABS_TOL``."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_matches(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for index, (got_item, want_item) in enumerate(zip(got, want, strict=True)):
            assert_matches(got_item, want_item, f"{path}[{index}]")
    elif isinstance(want, float) and not isinstance(got, bool) and isinstance(got, int | float):
        assert math.isclose(got, want, rel_tol=REL_TOL, abs_tol=ABS_TOL), f"{path}: {got!r} != {want!r}"
    else:
        assert type(got) is type(want) and got == want, f"{path}: {got!r} != {want!r}"


def test_golden_run_reproduces_the_pinned_numbers(tmp_path: Path) -> None:
    produced = json.loads(dumps(produce(tmp_path)))
    pinned = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    hint = "; regenerate with scripts/update_golden.py if meant"
    try:
        assert_matches(produced["eval"], pinned["eval"], "eval")
        assert_matches(produced["metrics"], pinned["metrics"], "metrics")
    except AssertionError as exc:
        raise AssertionError(f"{exc}{hint}") from None


@pytest.mark.parametrize(
    ("got", "want"),
    [
        ({"loss": 0.13294321}, {"loss": 0.1329432}),  # a CPU's kernel difference: 8th significant digit
        ({"drift": 5.96e-08}, {"drift": 0.0}),  # float32 noise on a near-zero statistic
        ({"a": [1, "x", None]}, {"a": [1, "x", None]}),
    ],
)
def test_a_cpu_kernel_difference_matches(got: Any, want: Any) -> None:
    assert_matches(got, want)


@pytest.mark.parametrize(
    ("got", "want"),
    [
        ({"loss": 0.1330}, {"loss": 0.1329}),  # a real change in what is computed
        ({"actions": [1, 2]}, {"actions": [1, 3]}),  # a different decision
        ({"count": 2.0}, {"count": 2}),  # an int pinned exactly, not as a float
        ({"a": 1}, {"a": 1, "b": 2}),
        ({"a": [1.0]}, {"a": [1.0, 2.0]}),
        ({"flag": True}, {"flag": 1}),
    ],
)
def test_a_real_change_does_not_match(got: Any, want: Any) -> None:
    with pytest.raises(AssertionError):
        assert_matches(got, want)
