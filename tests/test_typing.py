"""Strict type checking of the contract and the pure-maths modules.

These modules are the vocabulary and the formulas everything else trusts, so they stay
``mypy --strict`` clean; the test runs mypy in a subprocess so a regression fails CI.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

STRICT_PACKAGES = ("esper.tamiyo.contract",)
STRICT_MODULES = (
    "esper.tamiyo.networks.distributions",
    "esper.simic.agent.gae",
    "esper.simic.agent.ppo_loss",
    "esper.simic.env.alpha",
    "esper.simic.env.rewards",
)


@pytest.mark.slow
def test_contract_and_pure_maths_are_strictly_typed() -> None:
    args = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    for package in STRICT_PACKAGES:
        args += ["-p", package]
    for module in STRICT_MODULES:
        args += ["-m", module]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
