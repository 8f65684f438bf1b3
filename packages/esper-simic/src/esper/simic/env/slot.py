"""One seed slot: the seed module at an injection point, its lifecycle stage machine and its alpha.

Stage changes go through the contract's ``check_transition`` (an illegal one raises). Gates
(the reference's permissive gates, dwell scaled for 40-epoch episodes):

- G1 GERMINATED → TRAINING: always passes.
- G2 TRAINING → BLENDING: ``training_dwell`` epochs in TRAINING and the seed's gradients were
  measured in the last epoch and were finite.
- G3 BLENDING → HOLDING: the alpha controller is idle at alpha = target = 1.
- G5 HOLDING → FOSSILIZED: a counterfactual contribution has been measured.

The lifecycle clock :meth:`SeedSlot.tick` runs once per host epoch, after the policy's op and
before the epoch trains. In order: the cleanup pipeline PRUNED → EMBARGOED (first tick) →
RESETTING (after ``embargo_epochs`` ticks) → DORMANT (one tick later); auto-advance through G1
and G2; one alpha-controller tick; completion of a scheduled prune once alpha reached 0;
auto-advance through G3; then the epoch counters count the epoch about to be trained.

Forward (:meth:`SeedSlot.forward`): identity unless the seed is active. TRAINING is isolated:
the seed reads ``h.detach()`` and joins through a straight-through path, so the output value and
the host's gradients are exactly those of the seedless host while the seed learns from the task
loss. From BLENDING on the seed reads the live activation and is blended with its alpha (the
reference keeps the detach for CNNs, which starves host layers upstream of a slot at alpha 1;
we keep isolation to TRAINING, where it is needed, see docs/design/reference-numbers.md).
Fossilized seeds stay separate modules at alpha 1 and keep training with their own optimiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from esper.simic.env.alpha import AlphaController
from esper.simic.env.blending import Alpha, blend, straight_through
from esper.simic.env.blueprints import build_blueprint, build_gate
from esper.simic.env.sgd import ModuleSGD, SGDSettings
from esper.tamiyo.contract import (
    ACTIVE_STAGES,
    PRUNABLE_STAGES,
    STYLE_BLENDS,
    AlphaAlgorithm,
    AlphaCurve,
    AlphaMode,
    BlueprintAction,
    GerminationStyle,
    SeedStage,
    SlotState,
    check_transition,
)

#: Stages with a seed module present that is not yet permanent.
LIVE_STAGES = frozenset({SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING})
#: Steepness of the SIGMOID blend curve of the germination styles (reference k = 12).
STYLE_STEEPNESS = 12.0


class LifecycleError(ValueError):
    """A lifecycle operation that the slot's current state does not allow (the message says why)."""


@dataclass(frozen=True, slots=True)
class SlotSettings:
    """Per-slot constants taken from the environment config."""

    training_dwell: int = 4
    """Minimum epochs in TRAINING before G2 can pass."""
    embargo_epochs: int = 3
    """Epochs spent EMBARGOED after a prune."""
    seed_lr: float = 0.02
    """SGD learning rate of the seed's optimiser."""
    seed_momentum: float = 0.9
    """SGD momentum of the seed's optimiser."""
    seed_max_grad_norm: float = 1.0
    """Global gradient-norm clip of the seed (with its gate); 0 does not clip."""


@dataclass(frozen=True, slots=True)
class GradientStats:
    """Seed gradient health of one epoch, measured on its first minibatch before clipping."""

    norm: float
    """Global L2 norm of the seed's gradients (NaN/Inf when non-finite)."""
    finite: bool
    """Every gradient of every minibatch of the epoch was finite."""
    vanishing_fraction: float
    """Fraction of parameter tensors with gradient norm < 1e-7."""
    exploding_fraction: float
    """Fraction of parameter tensors with gradient norm > 10."""

    @property
    def health(self) -> float:
        """``1 − 0.5·vanishing − 0.8·exploding`` clamped to [0, 1]; 0 when not finite (reference formula)."""
        if not self.finite:
            return 0.0
        return min(max(1.0 - 0.5 * self.vanishing_fraction - 0.8 * self.exploding_fraction, 0.0), 1.0)


class SeedSlot(nn.Module):
    """The injection point ``slot_id`` of a host with activation shape ``slot_shape`` (per sample)."""

    def __init__(
        self,
        slot_id: str,
        slot_shape: tuple[int, ...],
        topology: str,
        settings: SlotSettings,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.slot_id = slot_id
        self.slot_shape = tuple(slot_shape)
        self.topology = topology
        self.settings = settings
        self.device = torch.device(device)
        self.seed: nn.Module | None = None
        self.gate: nn.Module | None = None
        self.sgd: ModuleSGD | None = None
        self._clear()

    # ----------------------------------------------------------------------------------- state
    def _clear(self) -> None:
        """Empty slot: no module, DORMANT, every per-seed record reset."""
        self.seed = None
        self.gate = None
        self.sgd = None
        self.stage = SeedStage.DORMANT
        self.previous_stage = SeedStage.DORMANT
        self.previous_stage_epochs = 0
        self.epochs_in_stage = 0
        self.age_epochs = 0
        self.blueprint: BlueprintAction | None = None
        self.algorithm = AlphaAlgorithm.ADD
        self.blend_curve = AlphaCurve.LINEAR
        self.tempo_epochs = 0
        self.blend_target = 1.0
        self.controller = AlphaController()
        self.scheduled_prune = False
        self.contribution: float | None = None
        self.contribution_velocity = 0.0
        self.epochs_since_contribution: int | None = None
        self.accuracy_at_germination = 0.0
        self.gradients: GradientStats | None = None
        self.grad_health_prev: float | None = None

    @property
    def occupied(self) -> bool:
        """A seed module is present (live or fossilized)."""
        return self.seed is not None

    @property
    def is_live(self) -> bool:
        """Holds a seed that can still be pruned (GERMINATED .. HOLDING)."""
        return self.stage in LIVE_STAGES

    @property
    def alpha(self) -> float:
        """Current blend amplitude (0 for an empty slot)."""
        return self.controller.alpha

    def _seed_modules(self) -> list[nn.Module]:
        """The seed and its gate, those that exist."""
        return [m for m in (self.seed, self.gate) if m is not None]

    @property
    def num_params(self) -> int:
        """Trainable parameters of the seed and its gate (0 when empty)."""
        return sum(p.numel() for m in self._seed_modules() for p in m.parameters())

    def parameters_to_train(self) -> list[nn.Parameter]:
        """Seed + gate parameters that currently take gradient steps (empty when frozen or empty)."""
        return [p for m in self._seed_modules() for p in m.parameters() if p.requires_grad]

    @property
    def trains(self) -> bool:
        """The seed takes gradient steps this epoch: present, in an active stage and not frozen by a DOWN ramp."""
        return self.sgd is not None and self.stage in ACTIVE_STAGES and bool(self.parameters_to_train())

    def mask_state(self) -> SlotState | None:
        """What the contract's mask rules need (``None`` for an empty DORMANT slot)."""
        if self.stage == SeedStage.DORMANT:
            return None
        return SlotState(stage=int(self.stage), age_epochs=self.age_epochs, alpha_mode=int(self.controller.mode))

    # --------------------------------------------------------------------------------- forward
    def forward(self, h: torch.Tensor, alpha: Alpha | None = None) -> torch.Tensor:
        """Slot output for host activation ``h`` (``[B, *slot_shape]``); ``alpha`` overrides the controller.

        ``alpha`` may be a per-sample tensor broadcastable against ``h`` (counterfactual
        evaluation). A TRAINING seed is straight-through (value ``h``) whatever ``alpha`` says.
        """
        if self.seed is None or self.stage not in ACTIVE_STAGES:
            return h
        if self.stage == SeedStage.TRAINING:
            if not torch.is_grad_enabled():
                return h  # the value is h exactly; skip the seed when nothing will learn from it
            return straight_through(h, self.seed(h.detach()))
        amplitude = self.controller.alpha if alpha is None else alpha
        if not isinstance(amplitude, torch.Tensor) and amplitude == 0.0:
            return h
        gate = self.gate(h) if self.gate is not None and self.algorithm == AlphaAlgorithm.GATE else None
        return blend(self.algorithm, h, self.seed(h), amplitude, gate)

    # ------------------------------------------------------------------------------ transitions
    def _transition(self, target: SeedStage) -> None:
        check_transition(self.stage, target)
        self.previous_stage, self.previous_stage_epochs = self.stage, self.epochs_in_stage
        self.stage, self.epochs_in_stage = target, 0

    def _make_optimizer(self) -> None:
        """Fresh optimiser state (no momentum) over the seed's and the gate's parameters."""
        params = [p for m in self._seed_modules() for p in m.parameters()]
        settings = self.settings
        self.sgd = ModuleSGD(
            params,
            SGDSettings(settings.seed_lr, settings.seed_momentum, max_grad_norm=settings.seed_max_grad_norm),
        )

    def _set_trainable(self, trainable: bool) -> None:
        for module in self._seed_modules():
            module.requires_grad_(trainable)

    def _apply_style(self, style: GerminationStyle | int, generator: torch.Generator) -> None:
        """Set the blend curve and algorithm of ``style``; build (or drop) the GATE's learned gate."""
        self.blend_curve, algorithm = STYLE_BLENDS[GerminationStyle(style)]
        changed = algorithm != self.algorithm
        self.algorithm = algorithm
        if algorithm == AlphaAlgorithm.GATE and self.gate is None:
            self.gate = build_gate(self.slot_shape, generator).to(self.device)
            changed = True
        elif algorithm != AlphaAlgorithm.GATE:
            self.gate = None
        if changed or self.sgd is None:
            self._make_optimizer()

    def germinate(
        self,
        blueprint: BlueprintAction | int,
        style: GerminationStyle | int,
        tempo_epochs: int,
        blend_target: float,
        generator: torch.Generator,
        accuracy: float,
    ) -> None:
        """Build a fresh seed (DORMANT → GERMINATED); it blends to ``blend_target`` over ``tempo_epochs`` later.

        ``accuracy`` (percent) is remembered as the accuracy at germination. Raises
        ``LifecycleError`` when the slot is not empty, ``ValueError`` for a blueprint the topology
        does not offer.
        """
        if self.stage != SeedStage.DORMANT:
            raise LifecycleError(f"cannot germinate in slot {self.slot_id}: it is {self.stage.name}, not DORMANT")
        if not 0.0 < blend_target <= 1.0 or tempo_epochs < 0:
            raise ValueError(
                f"need 0 < blend_target <= 1 and tempo_epochs >= 0, got {blend_target!r}, {tempo_epochs!r}"
            )
        seed = build_blueprint(self.topology, blueprint, self.slot_shape, generator).to(self.device)
        self._transition(SeedStage.GERMINATED)
        self.seed = seed
        self.blueprint = BlueprintAction(blueprint)
        self.algorithm = AlphaAlgorithm.ADD
        self._apply_style(style, generator)
        self.tempo_epochs = int(tempo_epochs)
        self.blend_target = float(blend_target)
        self.accuracy_at_germination = float(accuracy)

    def install_static(
        self, blueprint: BlueprintAction | int, algorithm: AlphaAlgorithm, generator: torch.Generator
    ) -> None:
        """Build a seed that is part of the architecture from the start: FOSSILIZED at alpha 1, no lifecycle.

        For the static baselines (``env/architecture.py``): the stage is set directly, bypassing the
        transition table on purpose (the seed never lived through the lifecycle), and the seed trains
        with its own optimiser from the first epoch, like any fossilized seed. Raises ``LifecycleError``
        when the slot is not empty.
        """
        if self.stage != SeedStage.DORMANT:
            raise LifecycleError(f"cannot install a seed in slot {self.slot_id}: it is {self.stage.name}")
        self.seed = build_blueprint(self.topology, blueprint, self.slot_shape, generator).to(self.device)
        self.blueprint = BlueprintAction(blueprint)
        self.algorithm = AlphaAlgorithm(algorithm)
        if self.algorithm == AlphaAlgorithm.GATE:
            self.gate = build_gate(self.slot_shape, generator).to(self.device)
        self._make_optimizer()
        self.stage = SeedStage.FOSSILIZED
        self.controller = AlphaController(1.0, 1.0, 1.0)

    def gate_passes(self) -> bool:
        """Whether the gate into the next stage of the successful path is open now."""
        if self.stage == SeedStage.GERMINATED:
            return True
        if self.stage == SeedStage.TRAINING:
            grads = self.gradients
            return self.epochs_in_stage >= self.settings.training_dwell and grads is not None and grads.finite
        if self.stage == SeedStage.BLENDING:
            ctrl = self.controller
            return ctrl.idle and ctrl.alpha == 1.0 and not self.scheduled_prune
        if self.stage == SeedStage.HOLDING:
            return self.contribution is not None
        return False

    def advance(self) -> bool:
        """Move GERMINATED → TRAINING → BLENDING → HOLDING by one stage if its gate passes; returns success."""
        if self.stage not in (SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING) or not self.gate_passes():
            return False
        if self.stage == SeedStage.GERMINATED:
            self._transition(SeedStage.TRAINING)
        elif self.stage == SeedStage.TRAINING:
            self._transition(SeedStage.BLENDING)
            curve, steepness = self.blend_curve, STYLE_STEEPNESS
            self.controller = self.controller.retarget(self.blend_target, self.tempo_epochs, curve, steepness)
        else:
            self._transition(SeedStage.HOLDING)
        return True

    def fossilize(self) -> bool:
        """HOLDING → FOSSILIZED if G5 passes (contribution measured); alpha is pinned at 1. Returns success."""
        if self.stage != SeedStage.HOLDING or not self.gate_passes():
            return False
        self._transition(SeedStage.FOSSILIZED)
        self.controller = AlphaController(1.0, 1.0, 1.0)
        return True

    def set_alpha_target(
        self,
        target: float,
        steps: int,
        curve: AlphaCurve | int,
        steepness: float,
        style: GerminationStyle | int,
        generator: torch.Generator,
    ) -> None:
        """Retarget an idle BLENDING/HOLDING seed: new blend style, ramp to ``target`` over ``steps`` ticks.

        HOLDING with a target below 1 returns to BLENDING first. A DOWN ramp freezes the seed's
        parameters until it ends. Raises ``LifecycleError`` in any other stage or while ramping.
        """
        if self.stage not in (SeedStage.BLENDING, SeedStage.HOLDING) or not self.controller.idle:
            raise LifecycleError(
                f"SET_ALPHA_TARGET needs an idle BLENDING/HOLDING seed; slot {self.slot_id} is {self.stage.name} "
                f"with alpha mode {self.controller.mode.name}"
            )
        if not 0.0 < target <= 1.0:
            raise ValueError(f"alpha target must be in (0, 1] (PRUNE removes a seed), got {target!r}")
        self.controller = self.controller.retarget(target, steps, curve, steepness)
        if self.stage == SeedStage.HOLDING and (self.controller.alpha < 1.0 or not self.controller.idle):
            self._transition(SeedStage.BLENDING)
        self._apply_style(style, generator)
        self.blend_target = target
        self._set_trainable(self.controller.mode != AlphaMode.DOWN)

    def prune(self, steps: int, curve: AlphaCurve | int, steepness: float) -> None:
        """Remove the seed: at once when alpha is 0 or ``steps`` is 0, else ramp alpha to 0 first.

        A scheduled prune moves HOLDING back to BLENDING, freezes the seed and completes in
        :meth:`tick` when alpha reaches 0. Raises ``LifecycleError`` outside GERMINATED..HOLDING
        or while the controller is ramping.
        """
        if self.stage not in PRUNABLE_STAGES or not self.controller.idle:
            raise LifecycleError(
                f"PRUNE needs an idle seed in GERMINATED..HOLDING; slot {self.slot_id} is {self.stage.name} "
                f"with alpha mode {self.controller.mode.name}"
            )
        if steps == 0 or self.controller.alpha == 0.0:
            self.prune_now()
            return
        if self.stage == SeedStage.HOLDING:
            self._transition(SeedStage.BLENDING)
        self.controller = self.controller.retarget(0.0, steps, curve, steepness)
        self.scheduled_prune = True
        self._set_trainable(False)

    def prune_now(self) -> None:
        """Immediate prune of a live seed: module and optimiser dropped, alpha 0, cleanup pipeline starts."""
        if not self.is_live:
            raise LifecycleError(f"cannot prune slot {self.slot_id}: it is {self.stage.name}")
        self._transition(SeedStage.PRUNED)
        self.seed, self.gate, self.sgd = None, None, None
        self.controller = AlphaController()
        self.scheduled_prune = False
        self.contribution, self.contribution_velocity, self.epochs_since_contribution = None, 0.0, None
        self.gradients, self.grad_health_prev = None, None

    # ------------------------------------------------------------------------------------ clock
    def tick(self, auto_advance: bool) -> None:
        """The once-per-epoch lifecycle clock (order in the module docstring)."""
        if self._advance_cleanup():
            return
        if auto_advance and self.stage in (SeedStage.GERMINATED, SeedStage.TRAINING):
            while self.stage in (SeedStage.GERMINATED, SeedStage.TRAINING) and self.advance():
                pass
        was_ramping = not self.controller.idle
        self.controller = self.controller.tick()
        if was_ramping and self.controller.idle:
            if self.scheduled_prune:
                self.prune_now()
            else:
                self._set_trainable(True)
        if auto_advance and self.stage == SeedStage.BLENDING:
            self.advance()
        if self.stage != SeedStage.DORMANT:
            self.epochs_in_stage += 1
        if self.occupied:
            self.age_epochs += 1

    def _advance_cleanup(self) -> bool:
        """One step of the prune clean-up pipeline (PRUNED → EMBARGOED → RESETTING → DORMANT).

        Returns True when the slot has just become DORMANT again: its clock stops for this epoch.
        """
        if self.stage == SeedStage.PRUNED:
            self._transition(SeedStage.EMBARGOED)
        elif self.stage == SeedStage.EMBARGOED and self.epochs_in_stage >= self.settings.embargo_epochs:
            self._transition(SeedStage.RESETTING)
        elif self.stage == SeedStage.RESETTING:
            self._transition(SeedStage.DORMANT)
            self._clear()
            return True
        return False

    # ---------------------------------------------------------------------------- measurements
    def record_gradients(self, stats: GradientStats | None) -> None:
        """Store this epoch's gradient stats (None: the seed did not train this epoch)."""
        if self.gradients is not None:
            self.grad_health_prev = self.gradients.health
        self.gradients = stats

    def record_contribution(self, contribution: float | None) -> None:
        """Store this epoch's counterfactual contribution (accuracy points) or note that none was measured."""
        if contribution is None or not math.isfinite(contribution):
            if self.epochs_since_contribution is not None:
                self.epochs_since_contribution += 1
            return
        previous = self.contribution
        self.contribution_velocity = 0.0 if previous is None else contribution - previous
        self.contribution = contribution
        self.epochs_since_contribution = 0

    def reset_optimizer(self) -> None:
        """Forget the seed optimiser's momentum (governor rollback)."""
        if self.seed is not None:
            self._make_optimizer()
