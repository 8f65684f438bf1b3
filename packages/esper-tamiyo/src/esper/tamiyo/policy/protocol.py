"""The ``PolicyBundle`` protocol: everything Simic (or any trainer) may ask of a policy.

A ``typing.Protocol`` rather than a base class so bundles can be plain classes, ``nn.Module``
subclasses or third-party types alike; it is ``runtime_checkable`` so the registry can verify a
class at registration time. Feature extraction is not the bundle's job: it receives the
contract's :class:`~esper.tamiyo.contract.Observation` and :class:`~esper.tamiyo.contract.ActionMasks`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, Self, runtime_checkable

import torch
from torch import nn
from typing_extensions import get_protocol_members

from esper.tamiyo.contract import ActionMasks, ActionSpace, Observation, SlotConfig
from esper.tamiyo.policy.results import ActionResult, EvalResult, Hidden

#: Modes accepted by ``compile``/``create_policy`` ("off" disables compilation).
COMPILE_MODES: tuple[str, ...] = ("off", "default", "reduce-overhead", "max-autotune")


@runtime_checkable
class PolicyBundle(Protocol):
    """A Tamiyo policy as trainers and evaluators see it.

    Shapes: ``B`` environments, ``T`` time steps, ``F`` features, ``S`` slots. Per-head dicts are
    keyed by ``action_space.head_names``.
    """

    def get_action(
        self,
        obs: Observation,
        masks: ActionMasks,
        hidden: Hidden = None,
        deterministic: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> ActionResult:
        """One step for B envs (``obs.features [B, F]``, masks with ``slot_by_op``), in inference mode.

        The op is chosen first; each other head is then restricted by the op (slot mask = the
        op's ``slot_by_op`` row; irrelevant heads forced to their canonical placeholder).
        ``generator`` (on the policy's device) is the only source of sampling randomness when
        given, so a trainer that owns it makes rollouts reproducible; ``None`` uses torch's global
        RNG. Trainers always pass it; a deterministic policy accepts it and ignores it.
        """
        ...

    def evaluate_actions(
        self, obs: Observation, actions: Mapping[str, torch.Tensor], masks: ActionMasks, hidden: Hidden = None
    ) -> EvalResult:
        """Log-probs, entropies, V and Q of stored ``actions[h] [B, T]`` from ``hidden``, with grad.

        ``masks.heads[h]`` is ``[B, T, size_h]`` and the slot mask is already op-conditioned.
        """
        ...

    def get_value(self, obs: Observation, hidden: Hidden = None) -> torch.Tensor:
        """V(s) ``[B]`` for bootstrapping, in inference mode."""
        ...

    def initial_hidden(self, batch_size: int) -> Hidden:
        """Recurrent state at an episode start for ``batch_size`` envs (``None`` if feed-forward)."""
        ...

    def parameters(self) -> Iterator[nn.Parameter]:
        """Trainable parameters (empty for rule-based bundles, which PPO then refuses)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Weights without any compile wrapper prefix."""
        ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load weights; a state dict of another architecture raises ``ValueError`` with a clear message."""
        ...

    def to(self, device: torch.device | str) -> Self:
        """Move to ``device`` and return self."""
        ...

    def compile(self, mode: str = "default") -> Self:
        """Compile the inner network (never the wrapper); idempotent; ``"off"`` does nothing."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def is_recurrent(self) -> bool: ...

    @property
    def action_space(self) -> ActionSpace: ...

    @property
    def slot_config(self) -> SlotConfig: ...

    @property
    def feature_dim(self) -> int:
        """Length F of ``obs.features``."""
        ...

    @property
    def hidden_dim(self) -> int:
        """Width of the recurrent state (0 for feed-forward bundles)."""
        ...

    @property
    def network(self) -> nn.Module | None:
        """The inner ``nn.Module`` (possibly compiled), or ``None`` for rule-based bundles."""
        ...

    @property
    def policy_config(self) -> Mapping[str, Any]:
        """JSON-serialisable constructor keyword arguments (besides slot config), so a checkpoint can
        rebuild the bundle through the registry."""
        ...


def protocol_members(protocol: type) -> tuple[str, ...]:
    """Sorted names of the members ``protocol`` declares (methods, properties, annotated attributes).

    Read from the class itself (``typing_extensions.get_protocol_members``, the backport of
    Python 3.13's ``typing.get_protocol_members``), so the list the registry checks can never
    drift from the protocol; private helpers (leading underscore) are not part of the contract.
    """
    return tuple(sorted(name for name in get_protocol_members(protocol) if not name.startswith("_")))


#: Member names a class must provide to satisfy ``PolicyBundle`` (checked by the registry).
PROTOCOL_MEMBERS: tuple[str, ...] = protocol_members(PolicyBundle)
