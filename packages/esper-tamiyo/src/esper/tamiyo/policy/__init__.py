"""The Tamiyo policy API: the ``PolicyBundle`` protocol, its result types, the registry and the factory.

Concrete bundles (``lstm``, ``mlp``, ``heuristic``, plugins) are not imported here: they are
resolved by name through the registry, which imports them lazily from ``esper.policies`` entry points.
``TrainablePolicyBundle`` is exported as the base for policy packages that bring their own network
(a subclass implements ``build_network``; see ``examples/esper-policy-example``).
"""

from esper.tamiyo.policy._trainable import REFERENCE_PROBABILITY_FLOORS, TrainablePolicyBundle
from esper.tamiyo.policy.factory import create_policy
from esper.tamiyo.policy.protocol import COMPILE_MODES, PROTOCOL_MEMBERS, PolicyBundle
from esper.tamiyo.policy.registry import (
    ENTRY_POINT_GROUP,
    PolicyInfo,
    PolicyLoadError,
    PolicyRegistry,
    PolicyRegistryError,
    UnknownPolicyError,
    default_registry,
    get_policy_class,
    list_policies,
    register_policy,
    validate_policy_class,
)
from esper.tamiyo.policy.results import ActionResult, EvalResult, Hidden

__all__ = [
    "COMPILE_MODES",
    "ENTRY_POINT_GROUP",
    "PROTOCOL_MEMBERS",
    "REFERENCE_PROBABILITY_FLOORS",
    "ActionResult",
    "EvalResult",
    "Hidden",
    "PolicyBundle",
    "PolicyInfo",
    "PolicyLoadError",
    "PolicyRegistry",
    "PolicyRegistryError",
    "TrainablePolicyBundle",
    "UnknownPolicyError",
    "create_policy",
    "default_registry",
    "get_policy_class",
    "list_policies",
    "register_policy",
    "validate_policy_class",
]
