"""Per-step rewards of the morphogenetic environment, built from the episode's stated objective.

The objective (``objective.py``) is what a user wants from an episode. Let ``o_t`` be the running
objective after ``t`` epochs: the validation accuracy then, minus the parameter price of the seeds
in the network then, minus the compute price of the seed training spent so far (``o_0`` is the
untrained host's accuracy: no seeds, no compute). ``T`` is the episode length, ``γ`` the
trainer's PPO gamma and step ``t`` (0-based) takes the episode from ``o_t`` to ``o_{t+1}``.

``objective`` (default)
    ``r_t = γ·o_{t+1} − o_t`` on every step but the last, and ``r_{T−1} = o_T − o_{T−1}`` on the
    last. The discounted return telescopes to ``G_0 = Σ γ^t r_t = γ^{T−1}·o_T − o_0``: a positive
    affine function of the episode's objective ``o_T``, with ``o_0`` fixed by the episode seed.
    The return PPO maximises therefore ranks policies exactly as the objective does, while each
    step still pays for the accuracy it gained (potential-based shaping with the objective as
    the potential, Ng, Harada & Russell 1999).
``sparse``
    0 on every step but the last, which pays ``o_T − o_0``: ``G_0 = γ^{T−1}·(o_T − o_0)``, the
    same ranking.

**Governor rollback.** A rollback at step ``t`` ends the episode; the episode failed, and its
objective is defined as ``o_T := −governor_penalty`` (``EpisodeSummary.objective`` reports
that). To keep ``G_0`` the *same* affine function of ``o_T`` as for an episode that ran its whole
length, the final reward discounts the failed objective to the horizon:
``r_t = γ^{T−1−t}·(−governor_penalty) − o_t`` (``sparse``: ``γ^{T−1−t}·(−governor_penalty − o_0)``).
On the last epoch ``T−1−t = 0``, so one formula covers both ends. With ``γ = 1`` this is the
plain ``−governor_penalty − o_t``.

**Components.** The objective is a sum of terms (:class:`ObjectiveTerms`: accuracy, parameter
cost, compute cost, governor penalty), and the reward is linear in it, so each reward component
is the same formula applied to one term; they sum to the reward, and each component's
discounted sum over an episode telescopes the same way (e.g. the ``accuracy`` component sums to
``γ^{T−1}·accuracy_T − accuracy_0``).

**Dropped** from earlier versions: the stage shaping, counterfactual attribution, parameter rent, action costs,
terminal bonus and invalid-action penalty of the earlier ``shaped``/``simplified`` modes. The
objective already prices what matters (parameters and compute); those terms made the return rank
policies differently from accuracy (no growth out-scored +15 points), and attribution's cap,
measured from the accuracy at germination, did not cap seeds germinated early. An invalid-action
penalty would add a term the objective does not contain and break the exact ranking; masks make
invalid actions rare, and they still run as WAIT and are counted (``invalid_actions``).

Rewards are in accuracy points (raw scale); the trainer normalises them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Protocol

from esper.simic.checks import check_float
from esper.simic.env.objective import ObjectiveConfig

#: Discount where no trainer supplies one (the ``heuristic`` command, a bare
#: :class:`~esper.simic.env.MorphogeneticEnv`, the Gymnasium adapter): the ``PPOConfig`` default, so
#: those returns are comparable with a default training run's. A trainer passes its PPO gamma.
DEFAULT_GAMMA = 0.99


def check_discount(gamma: float) -> float:
    """Return ``gamma`` if it is a discount in [0, 1], else raise ``ValueError`` naming the value."""
    check_float("gamma", gamma, high=1.0)
    return float(gamma)


@dataclass(frozen=True, slots=True)
class RewardConfig:
    """Weights of the reward (accuracy points). The prices of growth are not here: they belong to
    the objective (``EnvConfig.objective``), which the reward is built from."""

    governor_penalty: float = 10.0
    """Objective of an episode the governor rolled back (it is ``−governor_penalty``, accuracy points):
    a diverged run is worth less than any trained one."""

    def __post_init__(self) -> None:
        for f in fields(self):
            check_float(f"reward.{f.name}", getattr(self, f.name))


@dataclass(frozen=True, slots=True)
class _ObjectiveParts:
    """The objective's terms, each with the sign it has in the objective; shared by the running
    objective (:class:`ObjectiveTerms`) and a step's reward (:class:`RewardBreakdown`), which is a
    discounted difference of two of them, term by term."""

    accuracy: float = 0.0
    """Validation accuracy, percent."""
    param_cost: float = 0.0
    """``−param_price · seed_params / 1000`` (≤ 0 for a non-negative price)."""
    compute_cost: float = 0.0
    """``−compute_price · extra_compute`` (host-epochs spent on seeds so far)."""
    governor_penalty: float = 0.0
    """``−governor_penalty`` for a rolled-back episode, else 0."""

    @property
    def total(self) -> float:
        """The sum of the terms."""
        return self.accuracy + self.param_cost + self.compute_cost + self.governor_penalty

    def as_dict(self) -> dict[str, float]:
        """``{term: value}`` (JSON-able, total not included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class ObjectiveTerms(_ObjectiveParts):
    """The running objective split into its terms; ``total`` is the objective."""

    def combine(self, scale: float, minus: ObjectiveTerms) -> RewardBreakdown:
        """``scale · self − minus``, term by term, as reward components."""
        return RewardBreakdown(
            **{f.name: scale * getattr(self, f.name) - getattr(minus, f.name) for f in fields(ObjectiveTerms)}
        )


def objective_terms(accuracy: float, seed_params: int, extra_compute: float, config: ObjectiveConfig) -> ObjectiveTerms:
    """The objective's terms for a network at ``accuracy`` % with ``seed_params`` seed parameters after
    ``extra_compute`` host-epochs of seed training; their ``total`` is ``objective_value`` of the same."""
    return ObjectiveTerms(
        accuracy=accuracy,
        param_cost=-config.param_price * seed_params / 1000.0,
        compute_cost=-config.compute_price * extra_compute,
    )


def failed_objective(config: RewardConfig) -> ObjectiveTerms:
    """The objective of an episode ended by a governor rollback: ``−governor_penalty``."""
    return ObjectiveTerms(governor_penalty=-config.governor_penalty)


@dataclass(frozen=True, slots=True)
class RewardBreakdown(_ObjectiveParts):
    """One step's reward split by objective term (see :class:`ObjectiveTerms`); ``total`` is the reward."""


@dataclass(frozen=True, slots=True)
class RewardInputs:
    """Everything a reward needs about one environment step (objectives as :class:`ObjectiveTerms`)."""

    step: int
    """0-based index ``t`` of this step in the episode."""
    episode_length: int
    """``T``: steps of an episode that runs its whole length."""
    initial: ObjectiveTerms
    """``o_0``: the objective at reset."""
    before: ObjectiveTerms
    """``o_t``: the objective the policy observed when it chose this step's action."""
    after: ObjectiveTerms
    """``o_{t+1}``: the objective after this step's epoch (ignored on a governor rollback)."""
    governor_rollback: bool = False
    """The governor rolled the model back this step: the episode ends with the failed objective."""

    def __post_init__(self) -> None:
        if not 0 <= self.step < self.episode_length:
            raise ValueError(f"step must be in [0, episode_length={self.episode_length}), got {self.step}")

    @property
    def ends_episode(self) -> bool:
        """The last epoch or a rollback."""
        return self.governor_rollback or self.step == self.episode_length - 1

    def final_objective(self, config: RewardConfig) -> ObjectiveTerms:
        """``o_T`` on the step that ends the episode: the failed objective after a rollback, else ``after``."""
        return failed_objective(config) if self.governor_rollback else self.after

    def horizon_discount(self, gamma: float) -> float:
        """``γ^{T−1−t}``: carries a final objective reached at step ``t`` to the horizon (1 on the last epoch)."""
        return gamma ** (self.episode_length - 1 - self.step)


def objective_reward(inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown:
    """``γ·o_{t+1} − o_t``; on the step that ends the episode ``γ^{T−1−t}·o_T − o_t`` (module docstring)."""
    if inputs.ends_episode:
        return inputs.final_objective(config).combine(inputs.horizon_discount(gamma), inputs.before)
    return inputs.after.combine(gamma, inputs.before)


def sparse_reward(inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown:
    """0, except on the step that ends the episode: ``γ^{T−1−t}·(o_T − o_0)`` (module docstring)."""
    if not inputs.ends_episode:
        return RewardBreakdown()
    scale = inputs.horizon_discount(gamma)
    final, initial = inputs.final_objective(config), inputs.initial
    return RewardBreakdown(
        **{f.name: scale * (getattr(final, f.name) - getattr(initial, f.name)) for f in fields(ObjectiveTerms)}
    )


class _RewardFunction(Protocol):
    def __call__(self, inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown: ...


#: Reward functions by mode name; ``REWARD_MODES`` lists the names in a stable order.
_REWARD_FUNCTIONS: Mapping[str, _RewardFunction] = MappingProxyType(
    {"objective": objective_reward, "sparse": sparse_reward}
)
REWARD_MODES: tuple[str, ...] = tuple(_REWARD_FUNCTIONS)


def check_reward_mode(mode: str) -> str:
    """Return ``mode`` if it names a reward mode, else raise ``ValueError`` listing the known ones."""
    if mode not in _REWARD_FUNCTIONS:
        raise ValueError(f"unknown reward mode {mode!r}; known modes: {', '.join(REWARD_MODES)}")
    return mode


def compute_reward(mode: str, inputs: RewardInputs, config: RewardConfig, *, gamma: float) -> RewardBreakdown:
    """Reward of one step under ``mode`` (``"objective"`` or ``"sparse"``); ``gamma`` is the trainer's PPO gamma."""
    return _REWARD_FUNCTIONS[check_reward_mode(mode)](inputs, config, gamma=gamma)
