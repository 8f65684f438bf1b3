"""Frozen results of ``reset`` and ``step`` for the single and the vectorised environment.

What happened besides observation, reward and episode flags travels as typed records too:
:class:`ResetInfo` at the start of an episode, :class:`StepInfo` on every step and an
:class:`EpisodeSummary` on the step that ends the episode. Plain dicts exist only at the
Gymnasium boundary (``esper.simic.env.gym_adapter``), built from these records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from esper.simic.env.rewards import RewardBreakdown
from esper.tamiyo.contract import ActionMasks, Observation


@dataclass(frozen=True, slots=True)
class ResetInfo:
    """The freshly built host at epoch 0 (accuracies in percent)."""

    val_accuracy: float
    """Validation accuracy of the untrained host."""
    val_loss: float
    """Validation loss (mean cross-entropy) of the untrained host."""
    host_params: int
    """Parameters of the host network."""

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (the Gymnasium ``info``)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SlotTrace:
    """One slot's state after a step: what an episode trace shows of it."""

    slot_id: str
    """The slot's id (its injection point)."""
    stage: str
    """Name of the slot's lifecycle stage (``SeedStage``), e.g. ``"BLENDING"``."""
    blueprint: str | None
    """Name of the seed's blueprint (``BlueprintAction``); None for a slot that held no seed since its last reset."""
    alpha: float
    """The seed's blend amplitude (0 for an empty slot)."""
    contribution: float | None
    """The seed's latest counterfactual contribution (accuracy points); None until one was measured."""
    params: int
    """Parameters of the seed and its gate (0 when the slot holds no module)."""


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What one step did: the action as executed, the epoch's training and validation, the reward's parts."""

    executed_op: int
    """The op that ran: the chosen one, or WAIT when the action was invalid."""
    action_valid: bool
    """The chosen action was allowed by the masks and by its gate (False: it ran as WAIT)."""
    epoch: int
    """Host epochs trained so far in the episode (1 after the first step)."""
    train_loss: float
    """Mean training loss of the epoch just trained."""
    train_accuracy: float
    """Training accuracy (%) of the epoch just trained."""
    val_loss: float
    """Validation loss after the epoch (after the rollback, if the governor rolled back)."""
    val_accuracy: float
    """Validation accuracy (%) after the epoch (after the rollback, if any)."""
    contributions: Mapping[str, float]
    """Counterfactual contribution (accuracy points) of every measured seed, by slot id."""
    reward_components: RewardBreakdown
    """The step's reward split into its components (their sum is the reward)."""
    governor_rollback: bool
    """The governor restored the last snapshot and ended the episode (a true terminal)."""
    rollback_reason: str | None
    """Why the governor rolled back (``non_finite_loss``, ...); None without a rollback."""
    slots: tuple[SlotTrace, ...]
    """Every slot's state after the step, in slot order."""
    host_params: int
    """Parameters of the host network."""
    extra_compute: float
    """Training compute the seeds have cost so far in the episode, in host-epochs (see ``objective.py``)."""

    @property
    def val_perplexity(self) -> float:
        """``exp(val_loss)``: the validation perplexity per token on the text task (``inf`` past float range).

        A property, not a field: it is a function of ``val_loss``, so records and the Gymnasium dict
        keep one number for it.
        """
        return math.inf if self.val_loss > 709.0 else math.exp(self.val_loss)  # exp overflows a float past 709.78

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (the Gymnasium ``info``), reward components as a nested dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EpisodeSummary:
    """How one episode went, reported once, on the step that ended it (accuracies in percent)."""

    discounted_return: float
    """``G_0 = Σ γ^t r_t``, the return PPO maximises (raw scale, γ the env's gamma = the trainer's PPO
    gamma). In the ``objective`` reward mode it equals ``γ^{T−1}·objective − o_0`` (``rewards.py``)."""
    reward_components: Mapping[str, float]
    """``Σ γ^t`` of each reward component (``RewardBreakdown`` field → value); they sum to ``discounted_return``."""
    length: int
    """Steps (host epochs) the episode lasted."""
    final_accuracy: float
    """Validation accuracy at the end of the episode."""
    final_loss: float
    """Validation loss at the end of the episode."""
    host_accuracy: float
    """Final accuracy with every seed's alpha at 0: the host alone."""
    committed_accuracy: float
    """Final accuracy with only the fossilized seeds on."""
    germinated: int
    """Seeds germinated."""
    fossilized: int
    """Seeds fossilized."""
    pruned: int
    """Seeds pruned by a PRUNE action (not those pruned by a rollback or a schedule)."""
    rollbacks: int
    """Governor rollbacks (at most one: a rollback ends the episode)."""
    invalid_actions: int
    """Chosen actions that ran as WAIT because they were invalid."""
    fossilized_slots: tuple[str, ...]
    """Slot ids holding a fossilized seed at the end."""
    seed_params: int
    """Parameters of the seeds in the host at the end (live and fossilized)."""
    host_params: int
    """Parameters of the host network."""
    extra_compute: float
    """Training compute the seeds cost over the episode, in host-epochs (see ``objective.py``)."""
    objective: float
    """The episode's objective: final accuracy net of the parameter and compute prices (``objective.py``);
    ``−governor_penalty`` for an episode the governor rolled back (``rewards.py``)."""
    final_blueprints: Mapping[str, str] = field(default_factory=dict)
    """Blueprint id of the seed in each occupied slot at the end (live or fossilized), by slot id: the
    final architecture, which the static baseline of evaluation trains from epoch 0."""
    final_algorithms: Mapping[str, str] = field(default_factory=dict)
    """Blend algorithm (``add``, ``multiply``, ``gate``) of each seed in ``final_blueprints`` (a gate has
    parameters)."""

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (Esper's summary in the Gymnasium ``info``)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EnvReset:
    """Start of an episode: observation (features ``[F]``, blueprints ``[S]``), masks (single env) and info."""

    obs: Observation
    masks: ActionMasks
    info: ResetInfo


@dataclass(frozen=True, slots=True)
class EnvStep:
    """One step of one environment (raw, unnormalised observation and reward)."""

    obs: Observation
    masks: ActionMasks
    reward: float
    terminated: bool
    """True terminal (the last epoch, or a governor rollback): do not bootstrap."""
    truncated: bool
    """Always False here (the episode's end is a true terminal); a time-limit wrapper sets it, and
    then the trainer bootstraps from ``obs``."""
    info: StepInfo
    episode: EpisodeSummary | None
    """The episode's summary on the step that ended it (``terminated or truncated``), else None."""


@dataclass(frozen=True, slots=True)
class VectorReset:
    """Start of N episodes: observation ``[N, F]`` / ``[N, S]``, masks ``[N, ...]`` (with ``slot_by_op [N, O, S]``)."""

    obs: Observation
    masks: ActionMasks
    infos: tuple[ResetInfo, ...]


@dataclass(frozen=True, slots=True)
class VectorStep:
    """One lockstep step of N environments; finished environments are inactive and repeat their last obs."""

    obs: Observation
    masks: ActionMasks
    rewards: torch.Tensor
    """float32 ``[N]`` (0 for inactive envs)."""
    terminated: torch.Tensor
    """bool ``[N]``."""
    truncated: torch.Tensor
    """bool ``[N]``."""
    executed_op: torch.Tensor
    """int64 ``[N]``: the op actually executed (WAIT for an invalid action or an inactive env)."""
    active: torch.Tensor
    """bool ``[N]``: the env was stepped (its episode had not finished before this call)."""
    infos: tuple[StepInfo | None, ...]
    """Each env's step info; None for inactive envs."""
    episodes: tuple[EpisodeSummary | None, ...]
    """Each env's episode summary on the step that ended its episode, else None."""
