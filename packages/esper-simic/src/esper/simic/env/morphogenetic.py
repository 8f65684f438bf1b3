"""``MorphogeneticEnv``: one host training run as an RL episode, one host epoch per step.

``reset(seed)`` builds a fresh host from ``seed`` (a varied task first draws the host's shape
from it: ``variants.py``; all other randomness of the episode, parameter
initialisation and minibatch order, comes from one ``torch.Generator`` seeded with it; torch's
global RNG is never used), validates the untrained host (epoch 0) and returns the first
observation. The same seed and actions give the same episode bit for bit on CPU with the same
torch thread count (float reductions depend on it).

``step(action)`` runs, in this order:

1. **Execute** the action chosen on the previous observation. An action the masks do not allow,
   or that a gate refuses (ADVANCE, FOSSILIZE), runs as WAIT with ``info.action_valid`` False.
   A FOSSILIZE takes a governor snapshot at once.
2. **Lifecycle clock**: every slot ticks once (cleanup pipeline, auto-advance, alpha ramps,
   scheduled prunes, epoch counters).
3. **Train** one host epoch (host and seeds on their own optimisers).
4. **Validate** with counterfactual configurations; record gradients and contributions.
5. **Governor** check on the validation loss: NaN/Inf or sustained divergence restores the last
   snapshot, prunes live seeds, resets optimiser momentum and ends the episode
   (``terminated=True``) with the penalty. Otherwise snapshot every ``snapshot_interval`` epochs.
6. **Reward** of the step (``rewards.py``): from the running objective before the step (what
   the policy saw) and after the epoch (accuracy, seed parameters, compute spent so far).
7. **Observation and masks** for the next decision. After the last epoch the episode ends for
   real (``terminated=True``, never ``truncated``): nothing follows it, so nothing may be
   bootstrapped from the state after it. A wrapper imposing a shorter time limit (Gymnasium's
   ``TimeLimit``) truncates, and the trainer bootstraps such ends.

This is the reference loop (train → validate → governor → observe → act → reward → tick) cut at the
observation instead of at the training pass, so one ``step`` call contains one decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from esper.simic.env.actions import action_allowed, execute_action, parse_action
from esper.simic.env.architecture import FixedArchitecture
from esper.simic.env.config import EnvConfig
from esper.simic.env.datasets import TaskData, load_task
from esper.simic.env.governor import Governor, Snapshot, restore_snapshot, take_snapshot
from esper.simic.env.host_epoch import EpochStats, HostRun, train_epoch
from esper.simic.env.hosts import build_host
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.objective import epoch_compute, objective_value
from esper.simic.env.observations import build_masks, build_observation
from esper.simic.env.results import EnvReset, EnvStep, EpisodeSummary, ResetInfo, SlotTrace, StepInfo
from esper.simic.env.rewards import (
    DEFAULT_GAMMA,
    ObjectiveTerms,
    RewardBreakdown,
    RewardInputs,
    check_discount,
    compute_reward,
    objective_terms,
)
from esper.simic.env.sgd import ModuleSGD, SGDSettings
from esper.simic.env.signals import SignalTracker, TrackerSignals
from esper.simic.env.slot import SeedSlot, SlotSettings
from esper.simic.env.validation import ValidationResult, validate
from esper.simic.env.variants import EpisodeVariant, draw_variant, episode_preset
from esper.tamiyo.contract import (
    ActionMasks,
    ActionSpace,
    LifecycleOp,
    Observation,
    ObservationLayout,
    SeedStage,
    SlotConfig,
    morphogenetic_action_space,
)


def slot_trace(slot: SeedSlot) -> SlotTrace:
    """What an episode trace records of ``slot`` now."""
    blueprint = None if slot.blueprint is None else slot.blueprint.name
    return SlotTrace(slot.slot_id, slot.stage.name, blueprint, slot.alpha, slot.contribution, slot.num_params)


@dataclass(frozen=True, slots=True)
class _PendingStep:
    """What :meth:`MorphogeneticEnv.begin_step` decided, for :meth:`MorphogeneticEnv.finish_step`."""

    op: int
    """The executed op (WAIT for an invalid action)."""
    valid: bool


class EpisodeOverError(RuntimeError):
    """``step`` was called after the episode ended; call ``reset`` first."""


@dataclass(slots=True)
class _EpisodeTally:
    """Running counts of the episode in progress; frozen into an :class:`EpisodeSummary` at its end."""

    discounted_return: float = 0.0
    """``Σ γ^t r_t`` over the steps so far."""
    reward_components: dict[str, float] = field(default_factory=lambda: dict.fromkeys(RewardBreakdown().as_dict(), 0.0))
    """``Σ γ^t`` of each reward component over the steps so far."""
    discount: float = 1.0
    """``γ^t`` of the next step."""
    germinated: int = 0
    fossilized: int = 0
    pruned: int = 0
    rollbacks: int = 0
    invalid_actions: int = 0
    extra_compute: float = 0.0

    def count_op(self, op: int, valid: bool) -> None:
        """Count the executed ``op`` (an invalid action counts as invalid, not as the WAIT it ran as)."""
        if not valid:
            self.invalid_actions += 1
        elif op == LifecycleOp.GERMINATE:
            self.germinated += 1
        elif op == LifecycleOp.FOSSILIZE:
            self.fossilized += 1
        elif op == LifecycleOp.PRUNE:
            self.pruned += 1

    def add_reward(self, reward: RewardBreakdown, gamma: float) -> None:
        """Discount this step's reward and its components into the sums, then advance the discount."""
        self.discounted_return += self.discount * reward.total
        for name, value in reward.as_dict().items():
            self.reward_components[name] += self.discount * value
        self.discount *= gamma


class MorphogeneticEnv:
    """A host network growing seeds, controlled one epoch at a time (see module docstring)."""

    def __init__(
        self,
        config: EnvConfig,
        device: torch.device | str = "cpu",
        *,
        gamma: float = DEFAULT_GAMMA,
        data: TaskData | None = None,
    ) -> None:
        """``gamma`` discounts the reward (pass the trainer's PPO gamma); ``data`` lets
        several environments share one loaded task (it is never modified)."""
        self.config = config
        self.gamma = check_discount(gamma)
        self.device = torch.device(device)
        self.data = (data if data is not None else load_task(config)).to(self.device)
        self._slot_config = config.slot_config
        self._layout = ObservationLayout(self._slot_config, episode_block=config.varies_per_episode)
        self._space = morphogenetic_action_space(self._slot_config)
        self._slot_settings = SlotSettings(
            config.lifecycle.training_dwell,
            config.lifecycle.embargo_epochs,
            config.seed_training.lr,
            config.seed_training.momentum,
            config.seed_training.max_grad_norm,
        )
        self.governor = Governor(config.governor)
        self.tracker = SignalTracker()
        self.model: MorphogeneticModel | None = None
        self.snapshot: Snapshot | None = None
        self._generator = torch.Generator()
        self._host_sgd: ModuleSGD | None = None
        self._host_key: tuple[object, ...] = ()
        self._pending: _PendingStep | None = None
        self._masks: ActionMasks | None = None
        self._validation: ValidationResult | None = None
        self._epoch = 0
        self._done = True
        self._tally = _EpisodeTally()
        self._initial_objective = ObjectiveTerms()
        self._objective = ObjectiveTerms()
        self._variant: EpisodeVariant | None = None

    # ----------------------------------------------------------------------------- properties
    @property
    def slot_config(self) -> SlotConfig:
        return self._slot_config

    @property
    def layout(self) -> ObservationLayout:
        return self._layout

    @property
    def action_space(self) -> ActionSpace:
        return self._space

    @property
    def feature_dim(self) -> int:
        """Length of the observation feature vector."""
        return self._layout.size

    @property
    def topology(self) -> str:
        return self.config.topology

    @property
    def variant(self) -> EpisodeVariant | None:
        """The host drawn for the current episode of a varied task (None for a fixed task or before reset)."""
        return self._variant

    @property
    def epoch(self) -> int:
        """Host epochs trained so far in this episode."""
        return self._epoch

    @property
    def host_sgd(self) -> ModuleSGD | None:
        """The host's optimiser state (read-only; None before the first reset). A governor rollback
        resets its momentum, so the restored weights never inherit momentum from the failed epochs."""
        return self._host_sgd

    @property
    def done(self) -> bool:
        """The episode has ended (or was never started)."""
        return self._done

    # ---------------------------------------------------------------------------------- reset
    def reset(self, seed: int, *, architecture: FixedArchitecture | None = None) -> EnvReset:
        """Start a new episode with a fresh host built from ``seed``; returns the epoch-0 observation.

        ``architecture`` (the static baselines) widens the host and/or builds seeds in from epoch 0;
        their parameters are drawn from the episode's generator right after the host's.
        """
        self._generator = torch.Generator().manual_seed(int(seed))
        cfg = self.config
        self._variant = draw_variant(seed) if cfg.varies_per_episode else None
        preset = episode_preset(cfg, seed)
        if architecture is not None and architecture.host_widths is not None:
            preset = dataclasses.replace(preset, widths=architecture.host_widths)
        host = build_host(
            cfg.host,
            impaired=cfg.impaired,
            input_shape=self.data.input_shape,
            num_classes=self.data.num_classes,
            generator=self._generator,
            preset=preset,
        )
        self.model = MorphogeneticModel(host, cfg.slot_ids, self._slot_settings, self.device).to(self.device)
        if architecture is not None:
            architecture.install_seeds(self.model, self._generator)
        self._host_sgd = self._make_host_sgd()
        self._host_key = (cfg.host, preset, tuple(tuple(p.shape) for p in host.parameters()))
        self._pending = None
        self.governor.reset()
        self.tracker.reset()
        self._epoch = 0
        self._done = False
        self._tally = _EpisodeTally()
        self._validation = validate(
            self.model, self.data.val_x, self.data.val_y, chunk_size=cfg.host_training.val_batch_size
        )
        self.snapshot = take_snapshot(self.model)
        self._objective = self._initial_objective = self._running_objective()
        signals = self.tracker.update(self._validation.loss, self._validation.accuracy)
        obs, self._masks = self._observe(signals, success=True, op=LifecycleOp.WAIT)
        val = self._validation
        info = ResetInfo(val_accuracy=val.accuracy, val_loss=val.loss, host_params=host.num_params)
        return EnvReset(obs=obs, masks=self._masks, info=info)

    def _running_objective(self) -> ObjectiveTerms:
        """The objective of the network as it is now (``o_t``), with the compute spent so far."""
        assert self.model is not None and self._validation is not None
        seed_params = sum(s.num_params for s in self.model.all_slots())
        return objective_terms(self._validation.accuracy, seed_params, self._tally.extra_compute, self.config.objective)

    def _make_host_sgd(self) -> ModuleSGD:
        cfg = self.config.host_training
        assert self.model is not None
        return ModuleSGD(
            list(self.model.host.parameters()), SGDSettings(cfg.lr, cfg.momentum, cfg.weight_decay, cfg.max_grad_norm)
        )

    def _observe(self, signals: TrackerSignals, *, success: bool, op: int) -> tuple[Observation, ActionMasks]:
        assert self.model is not None
        slots = self.model.all_slots()
        cfg = self.config
        obs = build_observation(
            self._layout,
            slots,
            signals,
            epoch=self._epoch,
            episode_length=cfg.episode_length,
            last_action_success=success,
            last_op=op,
            episode=None if self._variant is None else self._variant.features(cfg.slot_ids),
        )
        masks = build_masks(
            slots,
            slot_config=self._slot_config,
            topology=cfg.topology,
            max_seeds=cfg.lifecycle.max_seeds,
            min_prune_age=cfg.lifecycle.min_prune_age,
            auto_advance=cfg.lifecycle.auto_advance,
        )
        return obs, masks

    # ----------------------------------------------------------------------------------- step
    def step(self, action: Mapping[str, object]) -> EnvStep:
        """Execute ``action`` ({head: index}), train one epoch, and return the next observation (module docstring)."""
        self.begin_step(action)
        return self.finish_step(
            train_epoch(self.host_run(), self.data, batch_size=self.config.host_training.batch_size)
        )

    def begin_step(self, action: Mapping[str, object]) -> None:
        """Steps 1–2 of :meth:`step`: execute ``action`` and tick the lifecycle clock. The epoch is trained next
        (by :meth:`step`, or by a host engine for several environments at once), then :meth:`finish_step`."""
        if self._done or self.model is None or self._masks is None or self._validation is None:
            raise EpisodeOverError("the episode is over (or was never started): call reset(seed) first")
        if self._pending is not None:
            raise RuntimeError("begin_step called twice: train the epoch and call finish_step first")
        model, cfg = self.model, self.config
        act = parse_action(action, self._space)
        slots = model.all_slots()
        valid = action_allowed(act, self._masks, self._space)
        valid = valid and execute_action(act, model, cfg.slot_ids, self._generator, self._validation.accuracy)
        op = act["op"] if valid else int(LifecycleOp.WAIT)
        self._tally.count_op(op, valid)
        if op == LifecycleOp.FOSSILIZE:
            self.snapshot = take_snapshot(model)
        for slot in slots:
            slot.tick(cfg.lifecycle.auto_advance)
        self._epoch += 1
        self._tally.extra_compute += epoch_compute(sum(s.num_params for s in slots), model.host.num_params)
        self._pending = _PendingStep(op=op, valid=valid)

    def host_run(self) -> HostRun:
        """What a host engine needs to train this environment's epoch (after :meth:`begin_step`)."""
        if self.model is None or self._host_sgd is None or self._pending is None:
            raise RuntimeError("host_run needs a step in progress: call begin_step first")
        return HostRun(self.model, self._host_sgd, self._generator)

    @property
    def host_key(self) -> tuple[object, ...]:
        """Equal for environments whose hosts have the same shape this episode (topology, preset, parameter
        shapes): the batched host engine trains those together."""
        return self._host_key

    def finish_step(self, epoch_stats: EpochStats, validation: ValidationResult | None = None) -> EnvStep:
        """Steps 4–7 of :meth:`step` once the epoch has trained: validate (unless a host engine passes the
        ``validation`` of the trained model), governor, reward, observe."""
        if self._pending is None or self.model is None or self._validation is None:
            raise RuntimeError("finish_step needs a step in progress: call begin_step first")
        pending, self._pending = self._pending, None
        model, cfg = self.model, self.config
        slots = model.all_slots()
        rollback, reason = self._validate_and_check(epoch_stats, validation)
        val = self._validation
        signals = self.tracker.update(val.loss, val.accuracy)

        last_step = self._epoch >= cfg.episode_length
        before, self._objective = self._objective, self._running_objective()
        reward = compute_reward(
            cfg.reward_mode,
            RewardInputs(
                step=self._epoch - 1,
                episode_length=cfg.episode_length,
                initial=self._initial_objective,
                before=before,
                after=self._objective,
                governor_rollback=rollback,
            ),
            cfg.reward,
            gamma=self.gamma,
        )
        self._tally.add_reward(reward, self.gamma)
        self._done = rollback or last_step
        obs, self._masks = self._observe(signals, success=pending.valid, op=pending.op)
        info = StepInfo(
            executed_op=pending.op,
            action_valid=pending.valid,
            epoch=self._epoch,
            train_loss=epoch_stats.train_loss,
            train_accuracy=epoch_stats.train_accuracy,
            val_loss=val.loss,
            val_accuracy=val.accuracy,
            contributions=dict(val.contributions),
            reward_components=reward,
            governor_rollback=rollback,
            rollback_reason=reason,
            slots=tuple(slot_trace(s) for s in slots),
            host_params=model.host.num_params,
            extra_compute=self._tally.extra_compute,
        )
        return EnvStep(
            obs=obs,
            masks=self._masks,
            reward=reward.total,
            terminated=self._done,
            truncated=False,
            info=info,
            episode=self._episode_summary(val) if self._done else None,
        )

    def _validate_and_check(
        self, epoch_stats: EpochStats, validation: ValidationResult | None
    ) -> tuple[bool, str | None]:
        """Record the epoch's gradients, validate, run the governor; returns ``(rolled_back, reason)``."""
        model, cfg = self.model, self.config
        assert model is not None
        for slot in model.all_slots():
            slot.record_gradients(epoch_stats.seed_gradients.get(slot.slot_id))
        val = validation or validate(
            model, self.data.val_x, self.data.val_y, chunk_size=cfg.host_training.val_batch_size
        )
        for slot in model.all_slots():
            slot.record_contribution(val.contributions.get(slot.slot_id))
        verdict = self.governor.check(val.loss)
        if verdict.panic:
            self._rollback()
            val = validate(model, self.data.val_x, self.data.val_y, chunk_size=cfg.host_training.val_batch_size)
        elif self._epoch % cfg.governor.snapshot_interval == 0 and not self.governor.anomaly_pending:
            self.snapshot = take_snapshot(model)
        self._validation = val
        return verdict.panic, verdict.reason

    def _rollback(self) -> None:
        """Restore the snapshot, prune every live seed, reset every optimiser's momentum."""
        model = self.model
        assert model is not None and self.snapshot is not None
        restore_snapshot(model, self.snapshot)
        for slot in model.all_slots():
            if slot.is_live:
                slot.prune_now()
            slot.reset_optimizer()
        assert self._host_sgd is not None
        self._host_sgd.reset()
        self._tally.rollbacks += 1

    def _episode_summary(self, val: ValidationResult) -> EpisodeSummary:
        assert self.model is not None
        slots = self.model.all_slots()
        tally = self._tally
        seed_params = sum(s.num_params for s in slots)
        return EpisodeSummary(
            discounted_return=tally.discounted_return,
            reward_components=dict(tally.reward_components),
            length=self._epoch,
            final_accuracy=val.accuracy,
            final_loss=val.loss,
            host_accuracy=val.all_off_accuracy,
            committed_accuracy=val.committed_accuracy,
            germinated=tally.germinated,
            fossilized=tally.fossilized,
            pruned=tally.pruned,
            rollbacks=tally.rollbacks,
            invalid_actions=tally.invalid_actions,
            fossilized_slots=tuple(s.slot_id for s in slots if s.stage == SeedStage.FOSSILIZED),
            seed_params=seed_params,
            host_params=self.model.host.num_params,
            extra_compute=tally.extra_compute,
            objective=-self.config.reward.governor_penalty
            if tally.rollbacks
            else objective_value(val.accuracy, seed_params, tally.extra_compute, self.config.objective),
            final_blueprints={
                s.slot_id: s.blueprint.blueprint_id for s in slots if s.occupied and s.blueprint is not None
            },
            final_algorithms={
                s.slot_id: s.algorithm.name.lower() for s in slots if s.occupied and s.blueprint is not None
            },
        )
