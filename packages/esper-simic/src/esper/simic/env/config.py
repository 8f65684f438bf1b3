"""Configuration of one morphogenetic environment (task, host, lifecycle constants, optimisers, governor).

Defaults are the CPU-sized faithful version of the reference (docs/design/reference-numbers.md): 40-epoch
episodes on the bundled ``digits`` task with the impaired MLP host and the lifecycle dwell times
scaled down from the reference's 150-epoch values (TRAINING dwell 10 → 4, minimum prune age
5 → 3, embargo 5 → 3, governor window 20 → 10 with 5 samples and 2 consecutive anomalies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from esper.simic.env.rewards import RewardConfig, check_reward_mode
from esper.tamiyo.contract import SlotConfig, parse_slot_id

TaskName = Literal["digits", "synthetic", "cifar10"]
HostName = Literal["mlp", "cnn"]
RewardMode = Literal["shaped", "simplified", "sparse"]

TASKS: tuple[str, ...] = ("digits", "synthetic", "cifar10")
HOSTS: tuple[str, ...] = ("mlp", "cnn")
#: Host blocks (slot positions). Slot ``r0c{i}`` sits after block ``i``.
NUM_HOST_BLOCKS = 3


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: object, *, low: float = 0.0, low_inclusive: bool = True, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value < low if low_inclusive else value <= low
    if too_low or value > high:
        bound = "[" if low_inclusive else "("
        raise ValueError(f"{name} must be in {bound}{low}, {high}], got {value!r}")


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """Everything that defines one environment; two envs with equal configs and reset seeds are identical."""

    task: TaskName = "digits"
    """Dataset: ``digits`` (bundled UCI 8x8 digits, 1,200/597 split), ``synthetic`` (seeded, any size,
    for tests) or ``cifar10`` (python pickle batches read from ``data_dir``; never downloaded)."""
    host: HostName = "mlp"
    """Host topology: ``mlp`` (3 hidden blocks) or ``cnn`` (3 conv+BatchNorm+ReLU blocks); a slot after each block."""
    impaired: bool = True
    """Use the impaired (too small to learn the task well alone) width preset, so seeds have something to fix."""
    slot_ids: tuple[str, ...] = ("r0c0", "r0c1", "r0c2")
    """Enabled slots, ``r0c{i}`` = after host block i (i < 3); their order is the slot-head order."""
    episode_length: int = 40
    """Host epochs per episode (= RL steps); the last one is a time-limit truncation."""
    reward_mode: RewardMode = "shaped"
    """Reward: ``shaped`` (dense, default), ``simplified`` (no counterfactuals/rent) or ``sparse`` (final step only)."""
    gamma: float = 0.99
    """Discount of the potential-based stage shaping; must equal the PPO gamma or the shaping stops telescoping."""
    max_seeds: int = 0
    """Cap on live + fossilized seeds per episode (pruned seeds free their budget); 0 = unlimited."""
    auto_advance: bool = True
    """Advance GERMINATED→TRAINING→BLENDING→HOLDING automatically when gates pass (ADVANCE is then masked)."""
    training_dwell: int = 4
    """Minimum epochs in TRAINING before BLENDING (gate G2; reference 10 for 150-epoch episodes)."""
    min_prune_age: int = 3
    """Minimum seed age in epochs before PRUNE is allowed (reference 5)."""
    embargo_epochs: int = 3
    """Epochs a slot stays EMBARGOED after a prune before its one-epoch RESETTING (reference 5)."""
    data_dir: str | None = None
    """Directory of the CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``); only for ``task=cifar10``."""
    batch_size: int = 100
    """Training minibatch size (samples); the last incomplete minibatch of an epoch is dropped."""
    val_batch_size: int = 1024
    """Validation samples per forward chunk (each chunk is evaluated for all counterfactual configs at once)."""
    host_lr: float = 0.02
    """SGD learning rate of the host (reference 0.01; 0.05 made the impaired cnn diverge now and then)."""
    host_momentum: float = 0.9
    """SGD momentum of the host."""
    host_weight_decay: float = 5e-4
    """SGD weight decay of the host (reference 5e-4)."""
    host_max_grad_norm: float = 1.0
    """Gradient-norm clip of the host parameters (separate from the seeds); 0 disables clipping."""
    seed_lr: float = 0.02
    """SGD learning rate of each seed (each seed has its own optimiser)."""
    seed_momentum: float = 0.9
    """SGD momentum of each seed."""
    seed_max_grad_norm: float = 1.0
    """Gradient-norm clip applied to each seed separately; 0 disables clipping."""
    synthetic_train_size: int = 512
    """Training samples of the ``synthetic`` task."""
    synthetic_val_size: int = 256
    """Validation samples of the ``synthetic`` task."""
    synthetic_seed: int = 0
    """Seed of the ``synthetic`` data generator (fixed per config, so every episode sees the same task)."""
    snapshot_interval: int = 5
    """Governor: take a last-known-good snapshot every this many epochs (and after every fossilize)."""
    governor_window: int = 10
    """Governor: healthy validation losses kept for the running statistics (reference 20)."""
    governor_min_samples: int = 5
    """Governor: losses needed in the window before divergence can be detected (reference 10)."""
    governor_patience: int = 2
    """Governor: consecutive anomalous epochs that trigger a rollback (reference 3)."""
    governor_sigma: float = 6.0
    """Governor: an anomaly is more than this many standard deviations above the window mean..."""
    governor_factor: float = 3.0
    """...and more than this multiple of the window mean..."""
    governor_min_loss: float = 5.0
    """...and above this absolute loss (nats; ln 10 ≈ 2.3 is chance level for 10 classes)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot_ids", tuple(self.slot_ids))
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {list(TASKS)}")
        if self.host not in HOSTS:
            raise ValueError(f"unknown host {self.host!r}; expected one of {list(HOSTS)}")
        check_reward_mode(self.reward_mode)
        for name in ("impaired", "auto_advance"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for slot_id in SlotConfig(self.slot_ids).slot_ids:  # validates form and uniqueness
            row, col = parse_slot_id(slot_id)
            if row != 0 or col >= NUM_HOST_BLOCKS:
                raise ValueError(f"slot {slot_id!r} does not exist: the hosts have slots r0c0..r0c{NUM_HOST_BLOCKS - 1}")
        for name, minimum in (
            ("episode_length", 1), ("max_seeds", 0), ("training_dwell", 0), ("min_prune_age", 0),
            ("embargo_epochs", 0), ("batch_size", 1), ("val_batch_size", 1), ("synthetic_train_size", 1),
            ("synthetic_val_size", 1), ("synthetic_seed", 0), ("snapshot_interval", 1), ("governor_window", 2),
            ("governor_min_samples", 2), ("governor_patience", 1),
        ):
            _check_int(name, getattr(self, name), minimum)
        if self.governor_min_samples > self.governor_window:
            raise ValueError(
                f"governor_min_samples ({self.governor_min_samples}) must be <= governor_window ({self.governor_window})"
            )
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        for name in ("host_lr", "seed_lr"):
            _check_float(name, getattr(self, name), low_inclusive=False)
        for name in ("host_momentum", "seed_momentum"):
            _check_float(name, getattr(self, name), high=0.999)
        for name in ("host_weight_decay", "host_max_grad_norm", "seed_max_grad_norm", "governor_sigma", "governor_min_loss"):
            _check_float(name, getattr(self, name))
        _check_float("governor_factor", self.governor_factor, low=1.0)
        if self.task == "cifar10" and not self.data_dir:
            raise ValueError("task 'cifar10' needs data_dir (a directory with the CIFAR-10 python batches)")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise TypeError(f"data_dir must be a str path or None, got {self.data_dir!r}")

    @property
    def topology(self) -> str:
        """Blueprint topology of the host (``"mlp"`` or ``"cnn"``), as the contract's masks expect it."""
        return self.host

    @property
    def slot_config(self) -> SlotConfig:
        """The contract's slot configuration (slot-head order = ``slot_ids``)."""
        return SlotConfig(self.slot_ids)

    @property
    def reward_config(self) -> RewardConfig:
        """Reward weights with the shaping discount tied to ``gamma``."""
        return RewardConfig(gamma=self.gamma)
