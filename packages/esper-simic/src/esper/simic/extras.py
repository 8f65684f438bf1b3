"""Optional extras: import a feature's third-party module on first use, or fail in one line naming the extra.

Features such as TensorBoard logging or the live progress display need packages that a plain
``pip install esper-simic`` leaves out. Their modules import those packages through
:func:`import_extra` when the feature is first used, so the rest of Esper never pays for them, and
a missing one is reported as the command to run (``esper-train: error: --tensorboard needs the
optional extra: pip install 'esper-simic[tensorboard]'``), not an ``ImportError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(RuntimeError):
    """A feature's optional dependency is not installed; the message names the extra to install."""


def import_extra(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` (e.g. ``"torch.utils.tensorboard"``) for ``feature`` (e.g. ``"--tensorboard"``).

    Raises:
        MissingExtraError: ``module`` or a package it needs is not installed; the message names
            ``esper-simic[extra]``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{feature} needs the optional extra: pip install 'esper-simic[{extra}]'") from exc
