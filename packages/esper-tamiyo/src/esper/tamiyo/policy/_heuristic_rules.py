"""Rule-based Tamiyo as pure tensor functions: config, per-env memory, observation signals, decision.

The rules are those of esper-lite's heuristic Tamiyo, vectorised over a
batch of B environments and S slots. Everything is read from the observation through
:class:`~esper.tamiyo.contract.ObservationLayout` named fields; per-environment memory travels in
a tensor (see :class:`HeuristicMemory`) instead of living on an object.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from esper.tamiyo.contract import (
    STAGE_ORDER,
    SYMLOG_SCALE,
    UNKNOWN,
    AlphaMode,
    BlueprintAction,
    LifecycleOp,
    ObservationLayout,
    SeedStage,
    topology_blueprints,
)

#: Default rotation per topology. The CNN one is the reference's; the reference defines no other,
#: so the MLP/transformer rotations are ours: cheap, general blueprints first.
DEFAULT_ROTATIONS: dict[str, tuple[str, ...]] = {
    "cnn": ("conv_light", "conv_heavy", "attention", "norm", "depthwise"),
    "mlp": ("norm", "mlp_small", "lora", "attention", "mlp"),
    "transformer": ("attention", "lora", "mlp_small", "norm", "flex_attention"),
}
#: The observation stores counterfactual contribution as accuracy points / 10 (``observation.py``).
CONTRIBUTION_SCALE = 10.0
_LIVE_STAGES = (SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING)
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class HeuristicConfig:
    """Thresholds of the rule-based policy. Accuracies and contributions are in points (0–100 scale).

    Epoch-valued defaults are scaled from the reference's 150-epoch episodes to Esper's 40-epoch
    ones (reference value in brackets); point-valued thresholds are the reference's.
    """

    episode_length: int = 40
    """Epochs per episode: the observation normalises epoch counts by it (must match the env)."""
    plateau_epochs_to_germinate: int = 3
    """Germinate after this many consecutive epochs without a new best accuracy [3].
    Counted from ``accuracy_history`` alone, so at most ``HISTORY_LENGTH - 1`` = 4."""
    plateau_threshold: float = 0.5
    """An epoch sets a new best when it beats the window's earlier best by at least this many points [0.5]."""
    min_epochs_before_germinate: int = 3
    """No germination before this epoch [5]."""
    stabilisation_epochs: int = 3
    """The host counts as stabilised after this many consecutive epochs whose relative loss
    improvement lies strictly inside ``stability_band`` [3]; the flag then latches for the episode."""
    stability_band: tuple[float, float] = (-0.05, 0.03)
    """``(low, high)`` relative loss improvement ``(prev - cur) / prev`` of a stable epoch [(-5%, +3%)]."""
    prune_after_epochs_in_stage: int = 3
    """A TRAINING/BLENDING seed can be pruned for an accuracy drop after this many epochs in stage [5]."""
    prune_if_accuracy_drops_by: float = 2.0
    """Prune when accuracy fell by more than this many points since the seed's stage started [2.0]."""
    min_contribution_to_fossilize: float = 0.5
    """FOSSILIZE a HOLDING seed whose counterfactual contribution exceeds this (points) [0.5]; else PRUNE."""
    ransomware_contribution: float = 0.1
    """A HOLDING seed with contribution above this (points) ... [0.1]"""
    ransomware_total_improvement: float = 0.0
    """... while accuracy is below its level at germination by more than this is pruned [0.0]."""
    embargo_epochs_after_prune: int = 3
    """No germination for this many epochs after a PRUNE [5]."""
    blueprint_rotation: tuple[str, ...] | None = None
    """Blueprint ids tried round-robin; ``None`` = :data:`DEFAULT_ROTATIONS` of the bundle's topology."""
    penalty_on_prune: float = 2.0
    """Penalty added to a blueprint each time a seed of it is pruned [2.0]."""
    penalty_decay: float = 0.5
    """Per-epoch multiplicative decay of blueprint penalties, in (0, 1] [0.5]."""
    penalty_floor: float = 0.1
    """Decayed penalties below this are forgotten [0.1]."""
    penalty_threshold: float = 3.0
    """Blueprints with a penalty at or above this are skipped by the rotation [3.0]."""

    def __post_init__(self) -> None:
        if self.blueprint_rotation is not None:
            object.__setattr__(self, "blueprint_rotation", tuple(self.blueprint_rotation))
        object.__setattr__(self, "stability_band", tuple(self.stability_band))
        for name in ("episode_length", "plateau_epochs_to_germinate", "stabilisation_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("min_epochs_before_germinate", "prune_after_epochs_in_stage", "embargo_epochs_after_prune"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        low, high = self.stability_band
        if not low < high:
            raise ValueError(f"stability_band must be (low, high) with low < high, got {self.stability_band}")
        if not 0.0 < self.penalty_decay <= 1.0:
            raise ValueError(f"penalty_decay must be in (0, 1], got {self.penalty_decay}")
        if self.penalty_on_prune < 0 or self.penalty_floor < 0 or self.penalty_threshold <= 0:
            raise ValueError(
                "penalties must be non-negative and the threshold positive, got "
                f"on_prune={self.penalty_on_prune}, floor={self.penalty_floor}, threshold={self.penalty_threshold}"
            )

    def rotation_for(self, topology: str) -> tuple[BlueprintAction, ...]:
        """The validated rotation as blueprints of ``topology``.

        Raises ``ValueError`` for an unknown topology, an empty rotation, duplicates, or a
        blueprint id the topology does not offer (e.g. the CNN rotation on a transformer).
        """
        allowed = topology_blueprints(topology)
        names = DEFAULT_ROTATIONS[topology] if self.blueprint_rotation is None else self.blueprint_rotation
        if not names or len(set(names)) != len(names):
            raise ValueError(f"blueprint_rotation must be non-empty without duplicates, got {list(names)}")
        offered = {bp.blueprint_id: bp for bp in allowed}
        unknown = [name for name in names if name not in offered]
        if unknown:
            raise ValueError(
                f"blueprint_rotation has {unknown} which topology {topology!r} does not offer; "
                f"choose from {sorted(offered)}"
            )
        return tuple(offered[name] for name in names)

    def to_json(self) -> dict[str, object]:
        """Field values as JSON-able constructor keywords (tuples become lists)."""
        out: dict[str, object] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class HeuristicMemory:
    """Per-environment memory of the heuristic, one row per env (``B``), all float32.

    Packed into a single hidden tensor ``[1, B, 4 + 13 + 3 * S]`` (batch at dim 1, like an RNN
    state) so it travels through trainers and resets exactly where recurrent state does. All
    zeros is a fresh episode: epochs are stored as ``epoch + 1`` with 0 meaning "never", so a
    trainer that resets recurrent state by multiplying it by ``1 - done`` also resets this.
    """

    last_prune: torch.Tensor
    """``[B]`` epoch of the last PRUNE + 1 (0 = never): starts the germination embargo."""
    last_epoch: torch.Tensor
    """``[B]`` epoch of the previous decision + 1 (0 = none): penalties decay once per elapsed epoch."""
    rotation: torch.Tensor
    """``[B]`` next position in the blueprint rotation."""
    stabilised: torch.Tensor
    """``[B]`` 1 once the host-stabilised latch has tripped this episode."""
    penalties: torch.Tensor
    """``[B, 13]`` penalty per ``BlueprintAction`` value."""
    seen_stage: torch.Tensor
    """``[B, S]`` ``SeedStage`` value of the live seed tracked in each slot (0 = none)."""
    stage_start_accuracy: torch.Tensor
    """``[B, S]`` accuracy (points) when that stage was first observed."""
    germination_accuracy: torch.Tensor
    """``[B, S]`` accuracy (points) when that seed was first observed."""

    @staticmethod
    def width(num_slots: int) -> int:
        """Packed width: 4 scalars + 13 penalties + 3 per slot."""
        return 4 + len(BlueprintAction) + 3 * num_slots

    @classmethod
    def unpack(cls, hidden: torch.Tensor, num_slots: int) -> HeuristicMemory:
        """Split a packed ``[1, B, width]`` tensor; ``ValueError`` on any other shape."""
        width = cls.width(num_slots)
        if hidden.dim() != 3 or hidden.shape[0] != 1 or hidden.shape[2] != width:
            raise ValueError(f"heuristic hidden state must be [1, B, {width}], got {list(hidden.shape)}")
        flat = hidden[0].to(torch.float32)
        nb = len(BlueprintAction)
        slots = flat[:, 4 + nb :].reshape(-1, 3, num_slots)
        scalars, penalties = flat[:, :4].unbind(dim=1), flat[:, 4 : 4 + nb]
        return cls(*scalars, penalties, *slots.unbind(dim=1))

    def pack(self) -> torch.Tensor:
        """The ``[1, B, width]`` hidden tensor."""
        scalars = torch.stack([self.last_prune, self.last_epoch, self.rotation, self.stabilised], dim=1)
        slots = torch.cat([self.seen_stage, self.stage_start_accuracy, self.germination_accuracy], dim=1)
        return torch.cat([scalars, self.penalties, slots], dim=1).unsqueeze(0)


@dataclass(frozen=True, slots=True)
class Signals:
    """What the rules read from one observation step, decoded to raw units."""

    epoch: torch.Tensor
    """``[B]`` epochs trained so far (float, integral)."""
    accuracy: torch.Tensor
    """``[B]`` validation accuracy, points."""
    plateau: torch.Tensor
    """``[B]`` int64 epochs without a new best accuracy (0..4)."""
    loss_stable: torch.Tensor
    """``[B]`` bool: the loss window satisfies the stabilisation rule now."""
    stage: torch.Tensor
    """``[B, S]`` int64 ``SeedStage`` value (UNKNOWN = 0 for an empty slot)."""
    alpha: torch.Tensor
    """``[B, S]`` current blend alpha."""
    alpha_target: torch.Tensor
    """``[B, S]`` alpha controller target."""
    alpha_idle: torch.Tensor
    """``[B, S]`` bool: the alpha controller is in HOLD."""
    contribution: torch.Tensor
    """``[B, S]`` counterfactual contribution, points (0 when never measured)."""
    measured: torch.Tensor
    """``[B, S]`` bool: a counterfactual has been measured for this seed."""
    epochs_in_stage: torch.Tensor
    """``[B, S]`` epochs in the current stage (float, integral)."""


def _trailing_true(cond: torch.Tensor) -> torch.Tensor:
    """Length of the run of True at the end of each row of ``cond [B, K]`` → int64 ``[B]``."""
    return torch.cumprod(cond.flip(-1).to(torch.int64), dim=-1).sum(dim=-1)


def read_signals(features: torch.Tensor, layout: ObservationLayout, config: HeuristicConfig) -> Signals:
    """Decode the named fields of ``features [B, F]`` into rule inputs.

    Derived signals (the base block has no plateau counter or stabilisation flag):

    * ``plateau``: trailing run of epochs in ``accuracy_history`` (known entries only; UNKNOWN
      padding is skipped) that did not beat the best earlier accuracy of the window by at least
      ``plateau_threshold`` points. The reference counts epochs whose accuracy *changed* by less
      than 0.5 points; on a small validation set (digits: 597 images, epoch-to-epoch noise of 1–2
      points) that run almost never reaches 3, and the heuristic would never germinate, so
      "no new best" (patience, as in learning-rate-on-plateau schedulers) is used instead.
    * ``loss_stable``: the trailing run of epochs in ``loss_history`` (losses recovered as
      ``expm1(SYMLOG_SCALE * v)``, the inverse of symlog/7 for non-negative losses) whose relative
      improvement ``(prev - cur) / prev`` lies strictly inside ``stability_band`` is at least
      ``stabilisation_epochs`` long. A previous loss that is 0 or not finite is never stable.

    The stabilisation rule is the environment tracker's, recomputed from the 5-epoch window the
    observation exports; the histories end with the current epoch. The stage comes from the
    stage one-hot (an empty slot's all-zero block decodes to UNKNOWN, which is not live).
    """
    L = float(config.episode_length)

    def base(name: str) -> torch.Tensor:
        return layout.read(features, name).to(torch.float32)

    def per_slot(name: str) -> torch.Tensor:
        return torch.cat([layout.read(features, name, slot=k) for k in range(layout.num_slots)], dim=-1).float()

    acc_hist, loss_hist = base("accuracy_history"), base("loss_history")
    acc_known, loss_known = acc_hist > UNKNOWN / 2, loss_hist > UNKNOWN / 2
    accuracy = torch.where(acc_known, acc_hist * 100.0, torch.full_like(acc_hist, -torch.inf))
    best_before = torch.cummax(accuracy, dim=1).values[:, :-1]  # best of epochs 0..t-1, for t = 1..
    no_new_best = accuracy[:, 1:] < best_before + config.plateau_threshold
    plateau = _trailing_true(acc_known[:, 1:] & acc_known[:, :-1] & no_new_best)

    loss = torch.expm1(loss_hist.clamp_min(0.0) * SYMLOG_SCALE)
    prev, cur = loss[:, :-1], loss[:, 1:]
    rel = (prev - cur) / prev.clamp_min(torch.finfo(torch.float32).tiny)
    low, high = config.stability_band
    measurable = loss_known[:, 1:] & loss_known[:, :-1] & (prev > 0) & torch.isfinite(prev) & torch.isfinite(cur)
    stable_step = measurable & (rel > low) & (rel < high)
    loss_stable = _trailing_true(stable_step) >= config.stabilisation_epochs

    stage_values = torch.tensor([int(s) for s in STAGE_ORDER], device=features.device)
    stage_onehot = torch.stack([layout.read(features, "stage", slot=k) for k in range(layout.num_slots)], dim=1)
    stage = stage_values[stage_onehot.argmax(dim=-1)]
    return Signals(
        epoch=torch.round(base("epoch_progress")[:, 0] * L),
        accuracy=base("val_accuracy")[:, 0] * 100.0,
        plateau=plateau,
        loss_stable=loss_stable,
        stage=stage,
        alpha=per_slot("alpha"),
        alpha_target=per_slot("alpha_target"),
        alpha_idle=torch.round(per_slot("alpha_mode") * 2.0) == int(AlphaMode.HOLD),
        contribution=per_slot("contribution") * CONTRIBUTION_SCALE,
        measured=per_slot("contribution_freshness") > UNKNOWN / 2,
        epochs_in_stage=torch.round(per_slot("epochs_in_stage") * L),
    )


def is_live(stage: torch.Tensor) -> torch.Tensor:
    """Seeds the rules act on: neither terminal (FOSSILIZED) nor failed nor empty."""
    return torch.isin(stage, torch.tensor([int(s) for s in _LIVE_STAGES], device=stage.device))


def observe(memory: HeuristicMemory, signals: Signals, config: HeuristicConfig) -> HeuristicMemory:
    """Fold one epoch's observation into memory before deciding.

    Decays penalties once per elapsed epoch (not per call), trips the stabilisation latch, and
    records the accuracy at which each live seed (and each of its stages) was first seen.
    """
    epoch = signals.epoch
    since_last = (epoch - (memory.last_epoch - 1)).clamp_min(0)
    elapsed = torch.where(memory.last_epoch > 0, since_last, torch.zeros_like(epoch))
    penalties = memory.penalties * torch.pow(config.penalty_decay, elapsed).unsqueeze(1)
    penalties = torch.where(penalties < config.penalty_floor, torch.zeros_like(penalties), penalties)
    live = is_live(signals.stage)
    stage = signals.stage.to(torch.float32)
    acc = signals.accuracy.unsqueeze(1).expand_as(stage)
    new_seed = live & (memory.seen_stage == 0)
    new_stage = live & (memory.seen_stage != stage)
    return replace(
        memory,
        last_epoch=epoch + 1,
        stabilised=torch.maximum(memory.stabilised, signals.loss_stable.to(torch.float32)),
        penalties=penalties,
        seen_stage=torch.where(live, stage, torch.zeros_like(stage)),
        stage_start_accuracy=torch.where(new_stage, acc, memory.stage_start_accuracy),
        germination_accuracy=torch.where(new_seed, acc, memory.germination_accuracy),
    )


def seed_ops(memory: HeuristicMemory, signals: Signals, config: HeuristicConfig) -> torch.Tensor:
    """The op each live seed asks for, ``int64 [B, S]`` (WAIT for empty/finished slots).

    GERMINATED → ADVANCE. TRAINING → PRUNE after an accuracy drop, else ADVANCE. BLENDING → PRUNE
    after a drop, ADVANCE once alpha sits idle at full amplitude, else WAIT. HOLDING → PRUNE a
    "ransomware" seed (contributes, yet accuracy is below its germination level), WAIT until a
    counterfactual exists, FOSSILIZE above ``min_contribution_to_fossilize``, else PRUNE.
    """
    s, acc = signals, signals.accuracy.unsqueeze(1)

    def const(value: LifecycleOp) -> torch.Tensor:
        return torch.full_like(s.stage, int(value))

    dropped = (s.epochs_in_stage >= config.prune_after_epochs_in_stage) & (
        acc - memory.stage_start_accuracy < -config.prune_if_accuracy_drops_by
    )
    at_full = (s.alpha_target >= 1.0 - _EPS) & s.alpha_idle & ((s.alpha - s.alpha_target).abs() <= _EPS)
    ransom = (s.contribution > config.ransomware_contribution) & (
        acc - memory.germination_accuracy < config.ransomware_total_improvement
    )
    prune, advance, wait = const(LifecycleOp.PRUNE), const(LifecycleOp.ADVANCE), const(LifecycleOp.WAIT)
    holding = torch.where(s.contribution > config.min_contribution_to_fossilize, const(LifecycleOp.FOSSILIZE), prune)
    holding = torch.where(ransom, prune, torch.where(s.measured, holding, wait))
    op = torch.where(s.stage == SeedStage.GERMINATED, advance, wait)
    op = torch.where(s.stage == SeedStage.TRAINING, torch.where(dropped, prune, advance), op)
    blending = torch.where(dropped, prune, torch.where(at_full, advance, wait))
    op = torch.where(s.stage == SeedStage.BLENDING, blending, op)
    return torch.where(s.stage == SeedStage.HOLDING, holding, op)


def germination_ready(memory: HeuristicMemory, signals: Signals, config: HeuristicConfig) -> torch.Tensor:
    """Bool ``[B]``: no live seed, embargo over, host stabilised, late enough, and on a plateau.

    (Whether a slot can take the seed is the masks' business and is checked by the caller.)
    """
    since_prune = signals.epoch - (memory.last_prune - 1)
    embargo_over = (memory.last_prune == 0) | (since_prune >= config.embargo_epochs_after_prune)
    return (
        ~is_live(signals.stage).any(dim=1)
        & embargo_over
        & (memory.stabilised > 0)
        & (signals.epoch >= config.min_epochs_before_germinate)
        & (signals.plateau >= config.plateau_epochs_to_germinate)
    )


def choose_blueprints(
    memory: HeuristicMemory, rotation: torch.Tensor, blueprint_mask: torch.Tensor, config: HeuristicConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-robin blueprint choice with penalties, restricted to the mask.

    Walk ``rotation [R]`` (``BlueprintAction`` values) from ``memory.rotation`` and take the first
    allowed blueprint whose penalty is below the threshold; the next walk starts after it. If
    every allowed one is penalised, sort them by (penalty, rotation name) and take position
    ``rotation index`` mod their count, advancing the index by one (reference fix B9-DRL-01).

    Returns ``(blueprint int64 [B], next rotation index float32 [B], any_allowed bool [B])``;
    rows with no allowed rotation blueprint get ``any_allowed`` False (caller falls back).
    """
    num = rotation.numel()
    index = memory.rotation.long() % num
    steps = torch.arange(num, device=rotation.device)
    order = (index.unsqueeze(1) + steps) % num  # [B, R] positions in walking order
    penalty = memory.penalties[:, rotation]  # [B, R]
    allowed = blueprint_mask[:, rotation]
    ok = (allowed & (penalty < config.penalty_threshold)).gather(1, order)
    first_ok = ok.to(torch.int8).argmax(dim=1)
    walked = order.gather(1, first_ok.unsqueeze(1)).squeeze(1)

    names = sorted(range(num), key=lambda i: BlueprintAction(int(rotation[i])).blueprint_id)
    by_name = torch.tensor(names, device=rotation.device)
    key = torch.where(allowed, penalty, torch.full_like(penalty, float("inf")))[:, by_name]
    ranked = by_name[torch.sort(key, dim=1, stable=True).indices]  # allowed first, by (penalty, name)
    count = allowed.sum(dim=1).clamp_min(1)
    fallback = ranked.gather(1, (index % count).unsqueeze(1)).squeeze(1)

    any_ok = ok.any(dim=1)
    position = torch.where(any_ok, walked, fallback)
    next_index = torch.where(any_ok, index + first_ok + 1, index + 1) % num
    return rotation[position], next_index.to(torch.float32), allowed.any(dim=1)
