"""The Tamiyo policy API: the ``PolicyBundle`` protocol, its result types, the registry and the factory."""

from esper.tamiyo.policy.protocol import COMPILE_MODES, PROTOCOL_MEMBERS, PolicyBundle
from esper.tamiyo.policy.results import ActionResult, EvalResult, Hidden

__all__ = ["COMPILE_MODES", "PROTOCOL_MEMBERS", "ActionResult", "EvalResult", "Hidden", "PolicyBundle"]
