"""What the trainable bundles (``lstm``, ``mlp``) share: the ``PolicyBundle`` plumbing around a network.

A subclass only says which network to build (:meth:`TrainablePolicyBundle.build_network`, the
extension point third-party policy packages override; see ``examples/esper-policy-example``). This
base owns input validation, the rollout and update legs (through
:mod:`esper.tamiyo.networks.scoring`, so both bundles score actions identically), weights I/O
with architecture checks, placement and compilation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Self

import torch
from torch import nn

from esper.tamiyo.contract import (
    ActionMasks,
    ActionSpace,
    BlueprintAction,
    Observation,
    SlotConfig,
    feature_size,
    morphogenetic_action_space,
)
from esper.tamiyo.networks import (
    ActorCriticOutput,
    NetworkSize,
    check_nonempty,
    choose_actions,
    resolve_network_size,
    score_actions,
)
from esper.tamiyo.policy._checks import (
    check_actions,
    check_blueprint_indices,
    check_compile_mode,
    check_finite_logits,
    check_hidden,
    check_masks,
    check_observation,
    check_rollout_rows,
)
from esper.tamiyo.policy.results import ActionResult, EvalResult, Hidden

#: Prefix ``torch.compile`` puts in front of a wrapped module's state-dict keys.
COMPILED_PREFIX = "_orig_mod."
#: Rows of the blueprint embedding (every ``BlueprintAction``; -1 = empty gets its own row).
NUM_BLUEPRINTS = len(BlueprintAction)
#: The reference implementation's per-head probability floors, for reproducing it:
#: ``create_policy("lstm", probability_floor=REFERENCE_PROBABILITY_FLOORS)``, or from the CLI
#: ``--policy-kwargs '{"probability_floor": {...}}'``. Not the default: with 40-epoch episodes a
#: 15% floor on every valid op means several random lifecycle operations per episode even for a
#: converged policy.
REFERENCE_PROBABILITY_FLOORS: Mapping[str, float] = MappingProxyType(
    {
        "op": 0.15,
        "slot": 0.05,
        "blueprint": 0.12,
        "style": 0.08,
        "tempo": 0.12,
        "alpha_target": 0.08,
        "alpha_speed": 0.06,
        "alpha_curve": 0.06,
    }
)


class TrainablePolicyBundle:
    """A ``PolicyBundle`` around an actor-critic network with the ``ActorCriticOutput`` interface.

    Keyword arguments (all JSON-able, echoed by ``policy_config``):
        slot_config: slot order; the slot head has ``num_slots`` actions.
        feature_dim: observation length F; default ``feature_size(num_slots)``.
        hidden_size: encoder width (default 128, or the preset's).
        lstm_hidden: recurrent width for ``lstm``, second trunk layer for ``mlp`` (default 128).
        preset: named sizes from ``NETWORK_PRESETS`` (``"default"``, ``"reference"`` = 512/512);
            explicit widths take precedence.
        probability_floor: ``{head: min probability in [0, 1)}`` of every valid action, applied
            identically on both legs (so PPO's ratios stay exact without PPO knowing about it);
            None = no floor. ``REFERENCE_PROBABILITY_FLOORS`` reproduces the reference.
        action_space: default the morphogenetic space of ``slot_config``; also accepted as the dict
            ``policy_config`` produces, so a checkpoint can rebuild a custom space.
    """

    def __init__(
        self,
        *,
        slot_config: SlotConfig,
        feature_dim: int | None = None,
        hidden_size: int | None = None,
        lstm_hidden: int | None = None,
        preset: str | None = None,
        probability_floor: Mapping[str, float] | None = None,
        action_space: ActionSpace | Mapping[str, Any] | None = None,
    ) -> None:
        self._slot_config = slot_config
        self._action_space = _resolve_action_space(action_space, slot_config)
        self._feature_dim = feature_size(slot_config.num_slots) if feature_dim is None else int(feature_dim)
        if self._feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        self._size = resolve_network_size(preset, hidden_size, lstm_hidden)
        self._floors = _resolve_floors(probability_floor, self._action_space)
        self._module = self.build_network(self._action_space, self._feature_dim, slot_config.num_slots, self._size)
        self._compiled = False

    def build_network(
        self, action_space: ActionSpace, feature_dim: int, num_slots: int, size: NetworkSize
    ) -> nn.Module:
        """Build the actor-critic this bundle wraps: the one method a subclass implements.

        This is the public extension point for policy packages that bring their own network
        (``lstm``, ``mlp`` and the example plugin's ``example-gru`` are such subclasses); the base
        class supplies everything else. Called once, from the constructor, after the action space,
        feature dim and sizes are resolved (``size.hidden_size``, ``size.lstm_hidden``).

        The module must provide (see ``FactoredRecurrentActorCritic``):
        ``forward(features [B, T, F], blueprint_indices [B, T, S], hidden) -> ActorCriticOutput``,
        ``q_value(trunk [B, T, H], ops [B, T]) -> [B, T]`` on detached features,
        ``initial_hidden(batch_size) -> tuple[Tensor, ...] | None`` (batch at dim 1),
        ``hidden_dim: int`` (0 if feed-forward) and ``compile_submodules(mode)`` (in place).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement build_network(action_space, feature_dim, num_slots, size) "
            "-> nn.Module (see TrainablePolicyBundle.build_network)"
        )

    # ----------------------------------------------------------------- rollout and update legs

    def get_action(
        self,
        obs: Observation,
        masks: ActionMasks,
        hidden: Hidden = None,
        deterministic: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> ActionResult:
        """One step for B envs: ``obs.features [B, F]``, ``masks.heads[h] [B, n]``, ``slot_by_op [B, O, S]``.

        Runs in inference mode. ``generator`` (on the policy's device) makes sampling
        reproducible; None uses torch's global RNG. Raises ``EmptyMaskError`` if a mask row (or the
        slot row of a valid op) has no valid action, ``ValueError`` on mis-shaped inputs or
        non-finite logits (a NaN observation).
        """
        (batch,) = check_observation(obs, self._feature_dim, self._slot_config.num_slots, sequence=False)
        check_masks(masks, self._action_space, batch_shape=(batch,), rollout=True)
        check_hidden(hidden, self._module.hidden_dim, batch)
        check_blueprint_indices(obs.blueprint_indices)
        check_rollout_rows(masks, self._action_space)
        with torch.inference_mode():
            out = self._rollout_forward(obs, hidden)
            logits = {h: values[:, 0] for h, values in out.logits.items()}
            check_finite_logits(logits)
            scores = choose_actions(
                self._action_space,
                self._floors,
                logits,
                masks.heads,
                masks.slot_by_op,
                deterministic=deterministic,
                generator=generator,
            )
        return ActionResult(scores.actions, scores.log_probs, scores.entropies, out.value[:, 0], out.hidden)

    def evaluate_actions(
        self, obs: Observation, actions: Mapping[str, torch.Tensor], masks: ActionMasks, hidden: Hidden = None
    ) -> EvalResult:
        """Score stored ``actions[h] [B, T]`` from ``hidden`` (None → zeros) with gradients enabled.

        ``obs`` is ``[B, T, F]`` / ``[B, T, S]``; ``masks.heads[h]`` is ``[B, T, n]`` with the slot
        mask already op-conditioned and ``slot_by_op`` None. Canonicalisation uses the stored op.
        """
        batch, steps = check_observation(obs, self._feature_dim, self._slot_config.num_slots, sequence=True)
        check_masks(masks, self._action_space, batch_shape=(batch, steps), rollout=False)
        check_actions(actions, self._action_space, (batch, steps))
        check_hidden(hidden, self._module.hidden_dim, batch)
        check_blueprint_indices(obs.blueprint_indices)
        check_nonempty(masks.heads)
        # Tensors straight from get_action are inference tensors, which autograd may not save.
        state = None if hidden is None else tuple(_trackable(t) for t in hidden)
        stored = {head: _trackable(actions[head]) for head in self._action_space.head_names}
        heads = {head: _trackable(mask) for head, mask in masks.heads.items()}
        out: ActorCriticOutput = self._module(_trackable(obs.features), _trackable(obs.blueprint_indices), state)
        scores = score_actions(self._action_space, self._floors, out.logits, heads, stored)
        q_value = self._module.q_value(out.trunk, stored[self._action_space.op_head])
        return EvalResult(scores.log_probs, scores.entropies, out.value, q_value, out.hidden)

    def get_value(self, obs: Observation, hidden: Hidden = None) -> torch.Tensor:
        """V(s) ``[B]`` for ``obs.features [B, F]`` from ``hidden``, in inference mode."""
        (batch,) = check_observation(obs, self._feature_dim, self._slot_config.num_slots, sequence=False)
        check_hidden(hidden, self._module.hidden_dim, batch)
        check_blueprint_indices(obs.blueprint_indices)
        with torch.inference_mode():
            return self._rollout_forward(obs, hidden).value[:, 0]

    def _rollout_forward(self, obs: Observation, hidden: Hidden) -> ActorCriticOutput:
        """Network on one step ``[B, 1, ...]``; call inside inference mode.

        Grad mode is switched back on inside inference mode: nothing is recorded (inference
        tensors never track history), but ATen then picks the same kernels as the update leg. On
        CPU the LSTM would otherwise run oneDNN's no-grad kernel, which rounds differently
        (~1e-7), and the two legs' log-probs would no longer be bit-identical.
        """
        with torch.enable_grad():
            return self._module(obs.features.unsqueeze(1), obs.blueprint_indices.unsqueeze(1), hidden)

    def initial_hidden(self, batch_size: int) -> Hidden:
        """Zero recurrent state for ``batch_size`` envs (ordinary tensors, usable with autograd).

        None for a feed-forward bundle.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self._module.initial_hidden(batch_size)

    # ----------------------------------------------------------------- weights

    def parameters(self) -> Iterator[nn.Parameter]:
        return self._module.parameters()

    def state_dict(self) -> dict[str, Any]:
        """Network weights; keys never carry a compile prefix (compilation is in place)."""
        return dict(self._module.state_dict())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load weights saved from a bundle of the same architecture (``_orig_mod.`` prefixes are stripped).

        Raises:
            ValueError: missing/unexpected keys (strict) or any tensor of another shape, naming
                the keys and this bundle's slot count, feature dim and head sizes.
        """
        incoming = {key.replace(COMPILED_PREFIX, ""): value for key, value in state_dict.items()}
        expected = self._module.state_dict()
        missing = sorted(expected.keys() - incoming.keys())
        unexpected = sorted(incoming.keys() - expected.keys())
        if strict and (missing or unexpected):
            raise ValueError(
                f"state dict does not fit {self._describe()}: "
                f"missing keys {missing[:8]}, unexpected keys {unexpected[:8]}"
            )
        mismatched = [
            f"{key}: got {list(value.shape)}, expected {list(expected[key].shape)}"
            for key, value in incoming.items()
            if key in expected and tuple(value.shape) != tuple(expected[key].shape)
        ]
        if mismatched:
            raise ValueError(f"state dict does not fit {self._describe()}: shape mismatch in {mismatched[:8]}")
        self._module.load_state_dict(incoming, strict=strict)

    def _describe(self) -> str:
        return (
            f"{type(self).__name__}(num_slots={self._slot_config.num_slots}, feature_dim={self._feature_dim}, "
            f"head_sizes={self._action_space.sizes()}, hidden_size={self._size.hidden_size}, "
            f"lstm_hidden={self._size.lstm_hidden})"
        )

    # ----------------------------------------------------------------- placement and compilation

    def to(self, device: torch.device | str) -> Self:
        """Move the network to ``device`` and return self.

        A compiled bundle may not change device (compiled graphs and CUDA graphs are specialised
        to where they were traced): compile after placement. Moving to the current device is a no-op.
        """
        target = torch.device(device)
        if self._compiled and not _same_device(target, self.device):
            raise RuntimeError(
                f"cannot move a compiled {type(self).__name__} from {self.device} to {target}: "
                "compile after placement (build, .to(device), then .compile(mode))"
            )
        self._module.to(target)
        return self

    def compile(self, mode: str = "default") -> Self:
        """Compile the inner network in place (never this wrapper); idempotent; ``"off"`` does nothing.

        The network decides what to compile (``compile_submodules``): the LSTM bundle leaves its
        recurrent core on the fused eager kernel. A second call, whatever its mode, is a no-op.
        """
        check_compile_mode(mode)
        if mode == "off" or self._compiled:
            return self
        self._module.compile_submodules(mode)
        self._compiled = True
        return self

    @property
    def is_compiled(self) -> bool:
        return self._compiled

    # ----------------------------------------------------------------- properties

    @property
    def device(self) -> torch.device:
        return next(self._module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self._module.parameters()).dtype

    @property
    def is_recurrent(self) -> bool:
        return self._module.hidden_dim > 0

    @property
    def action_space(self) -> ActionSpace:
        return self._action_space

    @property
    def slot_config(self) -> SlotConfig:
        return self._slot_config

    @property
    def feature_dim(self) -> int:
        return self._feature_dim

    @property
    def hidden_dim(self) -> int:
        return int(self._module.hidden_dim)

    @property
    def network(self) -> nn.Module:
        """The inner network (compiled in place after ``compile``)."""
        return self._module

    @property
    def probability_floor(self) -> Mapping[str, float]:
        """Per-head floors in effect (heads without a floor are absent)."""
        return self._floors

    @property
    def policy_config(self) -> Mapping[str, Any]:
        """JSON-able kwargs: ``type(self)(slot_config=..., feature_dim=..., **policy_config)`` rebuilds it."""
        config: dict[str, Any] = {
            "hidden_size": self._size.hidden_size,
            "lstm_hidden": self._size.lstm_hidden,
            "probability_floor": dict(self._floors) or None,
        }
        if self._action_space != morphogenetic_action_space(self._slot_config):
            config["action_space"] = action_space_config(self._action_space)
        return config


def action_space_config(space: ActionSpace) -> dict[str, Any]:
    """JSON-able dict of ``space`` (lists instead of tuples); ``ActionSpace(**...)`` after tuple-ing."""
    return {
        "head_names": list(space.head_names),
        "head_sizes": list(space.head_sizes),
        "op_head": space.op_head,
        "relevance": [list(row) for row in space.relevance],
        "placeholders": list(space.placeholders),
        "slot_head": space.slot_head,
    }


def _resolve_action_space(value: ActionSpace | Mapping[str, Any] | None, slot_config: SlotConfig) -> ActionSpace:
    if value is None:
        return morphogenetic_action_space(slot_config)
    if isinstance(value, ActionSpace):
        space = value
    elif isinstance(value, Mapping):
        space = ActionSpace(
            head_names=tuple(value["head_names"]),
            head_sizes=tuple(int(s) for s in value["head_sizes"]),
            op_head=str(value["op_head"]),
            relevance=tuple(tuple(bool(x) for x in row) for row in value["relevance"]),
            placeholders=tuple(int(p) for p in value["placeholders"]),
            slot_head=value.get("slot_head"),
        )
    else:
        raise TypeError(f"action_space must be an ActionSpace, a dict or None, got {type(value).__name__}")
    slot_head = space.slot_head
    if slot_head is not None and space.size(slot_head) != slot_config.num_slots:
        raise ValueError(
            f"action space slot head {slot_head!r} has {space.size(slot_head)} actions but the slot config "
            f"has {slot_config.num_slots} slots {list(slot_config.slot_ids)}"
        )
    return space


def _resolve_floors(floors: Mapping[str, float] | None, space: ActionSpace) -> Mapping[str, float]:
    resolved: dict[str, float] = {}
    for head, floor in (floors or {}).items():
        if head not in space.head_names:
            raise ValueError(f"probability_floor names unknown head {head!r}; heads: {list(space.head_names)}")
        if not 0.0 <= float(floor) < 1.0:
            raise ValueError(f"probability_floor[{head!r}] must be in [0, 1), got {floor}")
        if float(floor) > 0.0:
            resolved[head] = float(floor)
    return MappingProxyType(resolved)


def _trackable(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, or an ordinary copy of it if it was created in inference mode."""
    return tensor.clone() if tensor.is_inference() else tensor


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` are the same device (an index of None means the current one)."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)
