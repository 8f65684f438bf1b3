"""Per-step rewards of the morphogenetic environment, as pure functions of one step's facts.

Three modes (the reference's formulas, simplified and documented here):

``shaped`` (default)
    ``attribution + stage_shaping + rent + action_cost + invalid_penalty + terminal_bonus``.
``simplified`` (diagnostic, no counterfactuals and no rent)
    ``stage_shaping + action_cost + invalid_penalty + terminal_bonus``.
``sparse``
    zero on every step but the last, where it is ``terminal_bonus + rent`` (rent charged once).

In every mode a governor rollback ends the episode: that step's reward is the governor penalty,
plus (shaped, simplified) the stage-shaping term with the terminal potential taken as 0, and
nothing else, because the sampled action was not executed.

Every component is reported with the sign it has in the total, so ``total == sum(components)``.
Rewards are on the raw scale; the trainer normalises them.

Quirks of the reference that are deliberately dropped: the time-in-stage bonus inside the potential
(it made waiting pay), the potential of only the targeted slot (it breaks telescoping when the
target changes; here the potential is summed over all slots), the per-step attribution to whatever
slot an irrelevant slot head pointed at, the anti-gaming penalty patchwork (ratio, alpha shock,
holding indecision, occupancy), germination deposits repaid at the end, and the forfeit of all
earlier rewards on a governor rollback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Protocol

from esper.simic.checks import check_float, check_int
from esper.tamiyo.contract import LifecycleOp, SeedStage

#: Stage potential φ per seed stage (reference ``STAGE_POTENTIALS``, dwell bonus dropped).
#: A slot's potential grows monotonically along the successful path
#: DORMANT 0 → GERMINATED 1 → TRAINING 2 → BLENDING 3.5 → HOLDING 5.5 → FOSSILIZED 6, so
#: advancing a seed pays as it happens. Failure stages are worth 0 like an empty slot: a prune
#: gives back all the potential the seed had accumulated, so germinate → prune cycles earn
#: nothing from shaping. UNKNOWN (never reached in an episode) is 0.
STAGE_POTENTIALS: Mapping[SeedStage, float] = MappingProxyType(
    {
        SeedStage.UNKNOWN: 0.0,
        SeedStage.DORMANT: 0.0,
        SeedStage.GERMINATED: 1.0,
        SeedStage.TRAINING: 2.0,
        SeedStage.BLENDING: 3.5,
        SeedStage.HOLDING: 5.5,
        SeedStage.FOSSILIZED: 6.0,
        SeedStage.PRUNED: 0.0,
        SeedStage.EMBARGOED: 0.0,
        SeedStage.RESETTING: 0.0,
    }
)

#: Sign with which a decision on a measured seed is credited with that seed's value (see
#: :func:`attribution_term`). Only ops that commit the seed's fate are credited: an op that can be
#: repeated without changing it (WAIT, SET_ALPHA_TARGET) would let the policy farm a good seed.
ATTRIBUTION_SIGN: Mapping[LifecycleOp, float] = MappingProxyType(
    {
        LifecycleOp.WAIT: 0.0,
        LifecycleOp.GERMINATE: 0.0,
        LifecycleOp.SET_ALPHA_TARGET: 0.0,
        LifecycleOp.PRUNE: -1.0,
        LifecycleOp.FOSSILIZE: 1.0,
        LifecycleOp.ADVANCE: 0.0,
    }
)

_NUM_OPS = len(LifecycleOp)


#: Discount of the stage shaping where no trainer supplies one (the ``heuristic`` command, a bare
#: :class:`~esper.simic.env.MorphogeneticEnv`, the Gymnasium adapter): the ``PPOConfig`` default, so
#: those returns are comparable with a default training run's. A trainer passes its PPO gamma.
DEFAULT_GAMMA = 0.99


def check_discount(gamma: float) -> float:
    """Return ``gamma`` if it is a discount in [0, 1], else raise ``ValueError`` naming the value."""
    check_float("gamma", gamma, high=1.0)
    return float(gamma)


@dataclass(frozen=True, slots=True)
class RewardConfig:
    """Weights of the reward components; all on the raw (unnormalised) reward scale.

    The shaping discount is not a weight: it is the trainer's PPO gamma (one discount serves the
    shaping and GAE, or the shaping would stop telescoping), passed to :func:`compute_reward`.
    """

    shaping_weight: float = 0.3
    """Scale of the stage potentials (reference 0.3): fossilizing a seed from scratch is worth about
    0.3 · 6 = 1.8 in total."""
    contribution_weight: float = 0.1
    """Reward per accuracy point credited on a FOSSILIZE or PRUNE decision (10 points → 1.0). The
    reference paid 1.0 per point on every step; paid once per decision, 0.1 keeps a good seed's
    credit comparable to the terminal bonus."""
    rent_weight: float = 0.005
    """Parameter rent per step: ``rent_weight · ln(1 + seed_params / max(host_params, rent_host_floor))``.
    Log-scaled so doubling the model costs ``0.005 · ln 2 ≈ 0.0035`` per epoch (≈ 0.14 over a
    40-epoch episode). Measured on digits: at 0.02 a policy that lifted accuracy from 74 % to 91 %
    with 4k seed parameters scored a lower return than no growth, so the rent outweighed the
    accuracy it bought; 0.005 keeps growth a cost without inverting that trade."""
    rent_cap: float = 0.015
    """Upper bound of the rent charged in one step, reached at seeds 19× the host size
    (``ln 20 ≈ 3``), the same point as the reference's 1.5 at weight 0.5."""
    rent_host_floor: int = 200
    """Host size used instead of the real one when that is smaller (reference 200), so a tiny
    impaired host does not make every seed look enormous."""
    germinate_cost: float = 0.15
    """Cost of an executed GERMINATE (reference 0.15): germination is not free, it must earn its keep."""
    set_alpha_cost: float = 0.005
    """Cost of an executed SET_ALPHA_TARGET (reference 0.005)."""
    prune_cost: float = 0.005
    """Cost of an executed PRUNE (reference 0.005)."""
    fossilize_cost: float = 0.01
    """Cost of an executed FOSSILIZE (reference 0.01)."""
    advance_cost: float = 0.0
    """Cost of an executed ADVANCE (only selectable with auto-advance off)."""
    invalid_action_penalty: float = 0.1
    """Penalty when the chosen action was invalid for the state and ran as WAIT. Masks make this
    rare for a masked policy; it matters for adapters that mask heads independently."""
    terminal_accuracy_weight: float = 0.05
    """Reward per validation-accuracy point on the last step (reference 0.05: 70 % → 3.5)."""
    governor_penalty: float = 10.0
    """Penalty of a governor rollback, which ends the episode (reference 10)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "rent_host_floor":
                check_float(f"reward.{f.name}", getattr(self, f.name))
        check_int("reward.rent_host_floor", self.rent_host_floor, 1)

    def action_cost(self, op: int) -> float:
        """Cost (>= 0) of executing lifecycle op ``op``; WAIT is free."""
        return (
            0.0,
            self.germinate_cost,
            self.set_alpha_cost,
            self.prune_cost,
            self.fossilize_cost,
            self.advance_cost,
        )[LifecycleOp(op)]


@dataclass(frozen=True, slots=True)
class RewardInputs:
    """Everything a reward needs about one environment step.

    ``stages_before`` describes the state the policy observed; ``stages_after`` the state the next
    observation will describe (after the op and the end-of-epoch lifecycle tick). The next step's
    ``stages_before`` must equal this step's ``stages_after``: that identity is what makes the
    stage shaping telescope.
    """

    op: int
    """Executed ``LifecycleOp`` (WAIT when the chosen action was invalid)."""
    action_valid: bool
    """Whether the chosen action was valid and executed as chosen."""
    stages_before: tuple[int, ...]
    """``SeedStage`` value of every slot in slot order (DORMANT for an empty slot), before the step."""
    stages_after: tuple[int, ...]
    """``SeedStage`` value of every slot after the step (same slot order and length)."""
    val_accuracy: float
    """Validation accuracy measured this step, percent in [0, 100]."""
    seed_params: int
    """Trainable parameters of every seed module currently in the model (any stage), count."""
    host_params: int
    """Trainable parameters of the host, count (> 0)."""
    seed_contribution: float | None = None
    """Counterfactual contribution of the seed in the executed op's target slot, accuracy points
    (accuracy − accuracy with that slot's alpha forced to 0); None when the op targets no
    non-fossilized seed or the seed was not measured yet (alpha still 0)."""
    seed_progress: float | None = None
    """Accuracy gained since that seed was germinated (``val_accuracy − accuracy at germination``),
    points; None when unknown. Caps the positive credit (see :func:`attribution_term`)."""
    is_last_step: bool = False
    """This is the final epoch of the episode (time limit): the terminal bonus is paid."""
    governor_rollback: bool = False
    """The governor rolled the model back this step: the episode ends with the penalty."""

    def __post_init__(self) -> None:
        if not 0 <= self.op < _NUM_OPS:
            raise ValueError(f"op must be a LifecycleOp value in [0, {_NUM_OPS}), got {self.op!r}")
        if len(self.stages_before) != len(self.stages_after) or not self.stages_before:
            raise ValueError(
                "stages_before and stages_after need one entry per slot, "
                f"got {self.stages_before} and {self.stages_after}"
            )
        for stage in (*self.stages_before, *self.stages_after):
            SeedStage(stage)  # raises ValueError naming the bad value
        if self.seed_params < 0 or self.host_params < 1:
            raise ValueError(
                f"need seed_params >= 0 and host_params >= 1, got {self.seed_params} and {self.host_params}"
            )
        if not self.governor_rollback and not math.isfinite(self.val_accuracy):
            raise ValueError(f"val_accuracy must be finite outside a governor rollback, got {self.val_accuracy!r}")
        for name in ("seed_contribution", "seed_progress"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class RewardBreakdown:
    """One step's reward split into named components, each with the sign it has in the total."""

    attribution: float = 0.0
    stage_shaping: float = 0.0
    rent: float = 0.0
    action_cost: float = 0.0
    invalid_penalty: float = 0.0
    terminal_bonus: float = 0.0
    governor_penalty: float = 0.0

    @property
    def total(self) -> float:
        """The reward: the sum of all components."""
        return (
            self.attribution
            + self.stage_shaping
            + self.rent
            + self.action_cost
            + self.invalid_penalty
            + self.terminal_bonus
            + self.governor_penalty
        )

    def as_dict(self) -> dict[str, float]:
        """``{component: value}`` (JSON-able, total not included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def state_potential(stages: tuple[int, ...]) -> float:
    """Potential Φ(s) of a state: the sum of :data:`STAGE_POTENTIALS` over all slots (unweighted)."""
    return sum(STAGE_POTENTIALS[SeedStage(stage)] for stage in stages)


def stage_shaping_term(phi_before: float, phi_after: float, gamma: float, weight: float) -> float:
    """Potential-based shaping ``weight · (γ · Φ(s') − Φ(s))`` (Ng, Harada & Russell 1999).

    Summed over an episode with discount γ it telescopes to ``weight · (γ^T Φ(s_T) − Φ(s_0))``, so
    it moves rewards earlier without changing which policy is optimal. At the end of an episode
    (its last step or a governor rollback) pass ``phi_after = 0``: the sum is then ``−Φ(s_0)``,
    the same for every policy.
    """
    return weight * (gamma * phi_after - phi_before)


def seed_credit(contribution: float, progress: float | None) -> float:
    """Accuracy points a seed is credited with: its contribution, with positive credit capped.

    ``contribution < 0`` (the seed hurts): the contribution itself. Otherwise
    ``min(contribution, max(progress, 0))`` when ``progress`` is known, else the contribution.
    The cap replaces the reference's harmonic mean and sigmoid discounts: a seed cannot be
    credited with more accuracy than the model gained since it was germinated, so a host that
    merely came to depend on the seed (large removal cost, no real gain) earns nothing.
    """
    if contribution < 0.0 or progress is None:
        return contribution
    return min(contribution, max(progress, 0.0))


def attribution_term(inputs: RewardInputs, config: RewardConfig) -> float:
    """``contribution_weight · sign(op) · seed_credit(c, progress)``, 0 without a measured seed.

    ``sign`` is :data:`ATTRIBUTION_SIGN`: FOSSILIZE +1 (keeping a useful seed pays, keeping a
    harmful one costs), PRUNE −1 (removing a harmful seed pays, removing a useful one costs), 0
    for every other op.
    """
    if inputs.seed_contribution is None:
        return 0.0
    sign = ATTRIBUTION_SIGN[LifecycleOp(inputs.op)]
    if sign == 0.0:
        return 0.0
    return config.contribution_weight * sign * seed_credit(inputs.seed_contribution, inputs.seed_progress)


def rent_term(seed_params: int, host_params: int, config: RewardConfig) -> float:
    """``−min(rent_weight · ln(1 + seed_params / max(host_params, rent_host_floor)), rent_cap)`` (≤ 0)."""
    growth = seed_params / max(host_params, config.rent_host_floor)
    return -min(config.rent_weight * math.log1p(growth), config.rent_cap)


def terminal_bonus(val_accuracy: float, config: RewardConfig) -> float:
    """``terminal_accuracy_weight · val_accuracy`` (accuracy in percent: 70 → 3.5 by default)."""
    return config.terminal_accuracy_weight * val_accuracy


def _rollback(inputs: RewardInputs, config: RewardConfig, gamma: float, *, with_shaping: bool) -> RewardBreakdown:
    shaping = 0.0
    if with_shaping:
        shaping = stage_shaping_term(state_potential(inputs.stages_before), 0.0, gamma, config.shaping_weight)
    return RewardBreakdown(stage_shaping=shaping, governor_penalty=-config.governor_penalty)


def _common(inputs: RewardInputs, config: RewardConfig, gamma: float) -> RewardBreakdown:
    """The components shared by ``shaped`` and ``simplified``."""
    # The episode ends at its last step, so the final state's potential is not carried past the
    # horizon (Φ = 0 there, as for a rollback). The shaping then sums to -Φ(s_0) = 0 over every
    # episode: it only moves credit earlier and can never be farmed by ending with seeds parked in
    # high-potential stages (with Φ(s_T) kept, fossilizing useless seeds paid 1.8 each).
    phi_after = 0.0 if inputs.is_last_step else state_potential(inputs.stages_after)
    return RewardBreakdown(
        stage_shaping=stage_shaping_term(
            state_potential(inputs.stages_before), phi_after, gamma, config.shaping_weight
        ),
        action_cost=-config.action_cost(inputs.op),
        invalid_penalty=0.0 if inputs.action_valid else -config.invalid_action_penalty,
        terminal_bonus=terminal_bonus(inputs.val_accuracy, config) if inputs.is_last_step else 0.0,
    )


def shaped_reward(inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown:
    """Dense reward (default mode).

    ``attribution`` (:func:`attribution_term`) + ``stage_shaping`` (:func:`stage_shaping_term` on
    :func:`state_potential` before and after) + ``rent`` (:func:`rent_term`, every step) −
    ``action_cost`` (:meth:`RewardConfig.action_cost` of the executed op) −
    ``invalid_action_penalty`` (chosen action invalid) + ``terminal_bonus`` (last step only).
    A governor rollback gives only ``γ·0 − Φ(s)`` shaping and the penalty.
    """
    if inputs.governor_rollback:
        return _rollback(inputs, config, gamma, with_shaping=True)
    common = _common(inputs, config, gamma)
    return RewardBreakdown(
        attribution=attribution_term(inputs, config),
        stage_shaping=common.stage_shaping,
        rent=rent_term(inputs.seed_params, inputs.host_params, config),
        action_cost=common.action_cost,
        invalid_penalty=common.invalid_penalty,
        terminal_bonus=common.terminal_bonus,
    )


def simplified_reward(inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown:
    """Diagnostic reward without counterfactuals or rent.

    ``stage_shaping − action_cost − invalid_action_penalty + terminal_bonus``, each as in
    :func:`shaped_reward`; a governor rollback as there.
    """
    if inputs.governor_rollback:
        return _rollback(inputs, config, gamma, with_shaping=True)
    return _common(inputs, config, gamma)


def sparse_reward(inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown:
    """Outcome-only reward: 0 on every step except the last.

    Last step: ``terminal_bonus(val_accuracy) + rent_term(seed_params, host_params)``, the rent
    charged once for the final model size. A governor rollback gives only the penalty.
    """
    if inputs.governor_rollback:
        return _rollback(inputs, config, gamma, with_shaping=False)
    if not inputs.is_last_step:
        return RewardBreakdown()
    return RewardBreakdown(
        terminal_bonus=terminal_bonus(inputs.val_accuracy, config),
        rent=rent_term(inputs.seed_params, inputs.host_params, config),
    )


class _RewardFunction(Protocol):
    def __call__(self, inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown: ...


#: Reward functions by mode name; ``REWARD_MODES`` lists the names in a stable order.
_REWARD_FUNCTIONS: Mapping[str, _RewardFunction] = MappingProxyType(
    {"shaped": shaped_reward, "simplified": simplified_reward, "sparse": sparse_reward}
)
REWARD_MODES: tuple[str, ...] = tuple(_REWARD_FUNCTIONS)


def check_reward_mode(mode: str) -> str:
    """Return ``mode`` if it names a reward mode, else raise ``ValueError`` listing the known ones."""
    if mode not in _REWARD_FUNCTIONS:
        raise ValueError(f"unknown reward mode {mode!r}; known modes: {', '.join(REWARD_MODES)}")
    return mode


def compute_reward(mode: str, inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown:
    """Reward of one step under ``mode`` (``"shaped"``, ``"simplified"`` or ``"sparse"``).

    ``gamma`` is the discount of the stage shaping: the trainer's PPO gamma (see :data:`DEFAULT_GAMMA`).
    """
    return _REWARD_FUNCTIONS[check_reward_mode(mode)](inputs, config, gamma=gamma)
