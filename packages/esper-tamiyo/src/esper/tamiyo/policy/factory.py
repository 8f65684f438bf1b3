"""``create_policy``: build any registered ``PolicyBundle`` by name, place it, optionally compile it.

Every bundle follows one constructor convention (``Bundle(*, slot_config, feature_dim=None,
**policy_kwargs)``), so the factory, the CLI and checkpoint loading can build built-in and
third-party policies alike.
"""

from __future__ import annotations

from typing import Any

import torch

from esper.tamiyo.contract import SlotConfig
from esper.tamiyo.policy._checks import check_compile_mode
from esper.tamiyo.policy.protocol import PolicyBundle
from esper.tamiyo.policy.registry import PolicyRegistry, default_registry


def create_policy(
    policy_type: str,
    *,
    slot_config: SlotConfig | None = None,
    feature_dim: int | None = None,
    device: torch.device | str = "cpu",
    compile_mode: str = "off",
    registry: PolicyRegistry | None = None,
    **kwargs: Any,
) -> PolicyBundle:
    """Build the policy registered as ``policy_type``, move it to ``device``, then compile it.

    Order matters: the bundle is placed *before* it is compiled, so the compiled graph is traced
    for the final device. ``bundle.compile(mode)`` compiles the bundle's inner ``nn.Module``
    (never the wrapper) and is idempotent. A compiled bundle stays where it was compiled: the
    trainable bundles (``lstm``, ``mlp`` and subclasses of ``TrainablePolicyBundle``) raise
    ``RuntimeError`` if ``.to()`` asks for another device (same device: no-op), because compiled
    graphs are specialised to their device; build a new policy instead.

    Args:
        policy_type: registry name (``"lstm"``, ``"mlp"``, ``"heuristic"`` or a plugin's name).
        slot_config: slot layout; defaults to ``SlotConfig()`` (3 slots).
        feature_dim: observation length F; ``None`` lets the bundle derive it from ``slot_config``.
        device: where the bundle's parameters (and the tensors it creates) live.
        compile_mode: one of :data:`~esper.tamiyo.policy.protocol.COMPILE_MODES`; ``"off"`` skips compilation.
        registry: registry to resolve ``policy_type`` in (default: the process-wide one).
        **kwargs: the bundle's own constructor options (its ``policy_config``).

    Raises:
        ValueError: ``compile_mode`` is not one of ``COMPILE_MODES``.
        UnknownPolicyError: ``policy_type`` is not registered (lists the known names).
        PolicyLoadError: the plugin providing ``policy_type`` is broken.
    """
    check_compile_mode(compile_mode, name="compile_mode")
    cls = (default_registry if registry is None else registry).get_policy_class(policy_type)
    policy = cls(slot_config=slot_config or SlotConfig(), feature_dim=feature_dim, **kwargs)  # type: ignore[call-arg]
    policy = policy.to(device)
    if compile_mode != "off":
        policy = policy.compile(compile_mode)
    return policy
