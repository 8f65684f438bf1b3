"""Configuration of one morphogenetic environment: top-level choices plus nested settings sections.

``EnvConfig`` holds what picks the environment (task, host, slots, episode length, reward mode) and
one frozen section per concern: ``lifecycle``, ``host_training``, ``seed_training``, ``governor``,
``reward`` (:class:`~esper.simic.env.rewards.RewardConfig`), ``synthetic``, ``text`` and ``cifar10``. Each section is a
``[env.<section>]`` table in a config file and its fields are ``--<section>-<field>`` flags.

Defaults are the CPU-sized faithful version of the reference (docs/design/reference-numbers.md): 40-epoch
episodes on the bundled ``digits`` task with the impaired MLP host and the lifecycle dwell times
scaled down from the reference's 150-epoch values (TRAINING dwell 10 → 4, minimum prune age
5 → 3, embargo 5 → 3, governor window 20 → 10 with 5 samples and 2 consecutive anomalies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from esper.simic.checks import check_float, check_int
from esper.simic.env.objective import ObjectiveConfig
from esper.simic.env.rewards import RewardConfig, check_reward_mode
from esper.tamiyo.contract import SlotConfig, parse_slot_id

TaskName = Literal["digits", "digits-varied", "synthetic", "cifar10", "text"]
HostName = Literal["mlp", "cnn", "transformer"]
RewardMode = Literal["objective", "sparse"]

TASKS: tuple[str, ...] = ("digits", "digits-varied", "synthetic", "cifar10", "text")
#: Tasks whose episodes each draw their own host (``variants.py``) → the dataset they train on.
VARIED_TASKS: Mapping[str, str] = MappingProxyType({"digits-varied": "digits"})
HOSTS: tuple[str, ...] = ("mlp", "cnn", "transformer")
#: Host blocks of the default grid. Slot ``r0c{i}`` sits after block ``i``, ``r1c{i}`` inside it (env/hosts.py).
NUM_HOST_BLOCKS = 3
#: Slot rows: 0 = a block's output, 1 = a point inside the block.
NUM_SLOT_ROWS = 2
#: Most host blocks (grid columns) a slot grid may ask for; hosts grow blocks up to the largest column asked.
MAX_HOST_BLOCKS = 16

# Upper bounds of the sizes that allocate memory, checked when the config is built (before anything
# is allocated); each is generous for its use and stated in its field's docstring (so in --help).
#: Most host epochs per episode: 67x the reference's 150; the rollout buffer holds every step of every env.
MAX_EPISODE_LENGTH = 10_000
#: Most samples per host minibatch or validation chunk: 2**20, above every task's whole split (CIFAR-10 has
#: 50,000 training images), where a larger value means the same thing.
MAX_BATCH_SIZE = 1 << 20
#: Most samples per split of the ``synthetic`` task: 10**6 8x8 images are 256 MB of float32 per split.
MAX_SYNTHETIC_SAMPLES = 1_000_000
#: Most tokens per ``text`` window: the transformer's attention maps hold context_length**2 scores per
#: window and head, already 4 M at 2,048 (the host's positional table has one row per position).
MAX_CONTEXT_LENGTH = 2048
#: Largest generated default corpus: 64 MiB takes about 15 s to generate and 512 MiB as int64 tokens.
MAX_CORPUS_BYTES = 1 << 26
#: Most black pixels added per side before the 32x32 CIFAR crop: an image's own width (more is mostly padding).
MAX_CROP_PADDING = 32


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    """The seed lifecycle's rules: gate dwell times, prune age, embargo, seed budget, auto-advance."""

    training_dwell: int = 4
    """Minimum epochs in TRAINING before BLENDING (gate G2; reference 10 for 150-epoch episodes)."""
    min_prune_age: int = 3
    """Minimum seed age in epochs before PRUNE is allowed (reference 5)."""
    embargo_epochs: int = 3
    """Epochs a slot stays EMBARGOED after a prune before its one-epoch RESETTING (reference 5)."""
    max_seeds: int = 0
    """Cap on live + fossilized seeds per episode (pruned seeds free their budget); 0 = unlimited."""
    auto_advance: bool = True
    """Advance GERMINATED→TRAINING→BLENDING→HOLDING automatically when gates pass (ADVANCE is then masked)."""

    def __post_init__(self) -> None:
        for name in ("training_dwell", "min_prune_age", "embargo_epochs", "max_seeds"):
            check_int(f"lifecycle.{name}", getattr(self, name), 0)
        if not isinstance(self.auto_advance, bool):
            raise TypeError(f"lifecycle.auto_advance must be a bool, got {self.auto_advance!r}")


@dataclass(frozen=True, slots=True)
class HostTraining:
    """How the host trains each epoch: its SGD optimiser and the minibatches it shares with the seeds."""

    lr: float = 0.02
    """SGD learning rate of the host (reference 0.01; 0.05 made the impaired cnn diverge now and then)."""
    momentum: float = 0.9
    """SGD momentum of the host, in [0, 0.999]."""
    weight_decay: float = 5e-4
    """SGD weight decay of the host (reference 5e-4)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of the host parameters (separate from the seeds); 0 disables clipping."""
    batch_size: int = 100
    """Training minibatch size (samples) of host and seeds alike; an epoch's last incomplete minibatch is dropped
    (at most 1,048,576: MAX_BATCH_SIZE)."""
    val_batch_size: int = 1024
    """Validation samples per forward chunk (each chunk is evaluated for all counterfactual configs at once; at
    most 1,048,576: MAX_BATCH_SIZE)."""

    def __post_init__(self) -> None:
        check_float("host_training.lr", self.lr, low_inclusive=False)
        check_float("host_training.momentum", self.momentum, high=0.999)
        check_float("host_training.weight_decay", self.weight_decay)
        check_float("host_training.max_grad_norm", self.max_grad_norm)
        check_int("host_training.batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_int("host_training.val_batch_size", self.val_batch_size, 1, MAX_BATCH_SIZE)


@dataclass(frozen=True, slots=True)
class SeedTraining:
    """How each seed trains: its own SGD optimiser (seeds see the host's minibatches)."""

    lr: float = 0.02
    """SGD learning rate of each seed (each seed has its own optimiser)."""
    momentum: float = 0.9
    """SGD momentum of each seed, in [0, 0.999]."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip applied to each seed separately; 0 disables clipping."""

    def __post_init__(self) -> None:
        check_float("seed_training.lr", self.lr, low_inclusive=False)
        check_float("seed_training.momentum", self.momentum, high=0.999)
        check_float("seed_training.max_grad_norm", self.max_grad_norm)


@dataclass(frozen=True, slots=True)
class GovernorSettings:
    """The safety governor: when to snapshot, and when a validation loss counts as divergence.

    A loss is anomalous when, with at least ``min_samples`` healthy losses in the window, it is more
    than ``sigma`` standard deviations above their mean, more than ``factor`` times the mean *and*
    above ``min_loss``; ``patience`` consecutive anomalies roll the model back.
    """

    snapshot_interval: int = 5
    """Take a last-known-good snapshot every this many epochs (and after every fossilize)."""
    window: int = 10
    """Healthy validation losses kept for the running statistics (reference 20)."""
    min_samples: int = 5
    """Losses needed in the window before divergence can be detected (reference 10)."""
    patience: int = 2
    """Consecutive anomalous epochs that trigger a rollback (reference 3)."""
    sigma: float = 6.0
    """An anomaly is more than this many standard deviations above the window mean..."""
    factor: float = 3.0
    """...and more than this multiple of the window mean (>= 1)..."""
    min_loss: float = 5.0
    """...and above this absolute loss (nats; ln 10 ≈ 2.3 is chance level for 10 classes)."""

    def __post_init__(self) -> None:
        for name, minimum in (("snapshot_interval", 1), ("window", 2), ("min_samples", 2), ("patience", 1)):
            check_int(f"governor.{name}", getattr(self, name), minimum)
        if self.min_samples > self.window:
            raise ValueError(f"governor.min_samples ({self.min_samples}) must be <= governor.window ({self.window})")
        check_float("governor.sigma", self.sigma)
        check_float("governor.factor", self.factor, low=1.0)
        check_float("governor.min_loss", self.min_loss)


@dataclass(frozen=True, slots=True)
class SyntheticTask:
    """Size and seed of the ``synthetic`` task (ignored by the other tasks)."""

    train_size: int = 512
    """Training samples of the ``synthetic`` task (at most 1,000,000: MAX_SYNTHETIC_SAMPLES)."""
    val_size: int = 256
    """Validation samples of the ``synthetic`` task (at most 1,000,000: MAX_SYNTHETIC_SAMPLES)."""
    seed: int = 0
    """Seed of the ``synthetic`` data generator (fixed per config, so every episode sees the same task)."""

    def __post_init__(self) -> None:
        check_int("synthetic.train_size", self.train_size, 1, MAX_SYNTHETIC_SAMPLES)
        check_int("synthetic.val_size", self.val_size, 1, MAX_SYNTHETIC_SAMPLES)
        check_int("synthetic.seed", self.seed, 0)


@dataclass(frozen=True, slots=True)
class TextTask:
    """Windows, split and default corpus of the ``text`` task (ignored by the other tasks).

    Tokens are bytes (vocabulary 256): any file reads without a tokenizer and nothing is ever
    unknown; UTF-8 text becomes its bytes (a non-ASCII character is 2-4 tokens) and bytes that are
    not valid UTF-8 are simply tokens too (the byte fallback).
    """

    context_length: int = 32
    """Tokens per window (``T``): the host sees ``T`` tokens and predicts the next one at every position (at
    most 2,048: MAX_CONTEXT_LENGTH)."""
    train_windows: int = 200
    """Training windows per host epoch, drawn from the episode's generator out of all the training split's
    non-overlapping windows (0: every window, every epoch)."""
    val_windows: int = 64
    """Validation windows, evenly spaced over the validation split and the same every epoch (0: all of them)."""
    val_fraction: float = 0.1
    """Share of the token stream, at its end, held out for validation (in (0, 1))."""
    max_bytes: int = 8_388_608
    """Bytes of the corpus read at most (its beginning; 8 MiB = 64 MiB of int64 tokens); 0 reads it all."""
    corpus_bytes: int = 200_000
    """Size of the generated default corpus (no data_dir), in bytes: sentences are added until it is reached (at
    most 64 MiB: MAX_CORPUS_BYTES)."""
    corpus_seed: int = 0
    """Seed of the default corpus's grammar sampler (fixed per config, so every episode sees the same corpus)."""

    def __post_init__(self) -> None:
        check_int("text.context_length", self.context_length, 1, MAX_CONTEXT_LENGTH)
        for name in ("train_windows", "val_windows", "max_bytes", "corpus_seed"):
            check_int(f"text.{name}", getattr(self, name), 0)
        check_int("text.corpus_bytes", self.corpus_bytes, 1, MAX_CORPUS_BYTES)
        check_float("text.val_fraction", self.val_fraction, low_inclusive=False, high=1.0, high_inclusive=False)


@dataclass(frozen=True, slots=True)
class CifarTask:
    """Training-time augmentation of the ``cifar10`` task (ignored by the other tasks, which have none).

    The field's standard CIFAR-10 recipe: each training sample of each minibatch is randomly cropped
    back to 32×32 from the image padded by ``crop_padding`` black pixels on every side, and flipped
    left-right with probability 1/2; validation images are never augmented.
    """

    augment: bool = True
    """Random crop with padding and horizontal flip of every training minibatch (on the data's device)."""
    crop_padding: int = 4
    """Black pixels added on each side before the random 32×32 crop (the field's 4); 0 leaves only the flip
    (at most 32: MAX_CROP_PADDING)."""

    def __post_init__(self) -> None:
        if not isinstance(self.augment, bool):
            raise TypeError(f"cifar10.augment must be a bool, got {self.augment!r}")
        check_int("cifar10.crop_padding", self.crop_padding, 0, MAX_CROP_PADDING)


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """Everything that defines one environment; two envs with equal configs, discounts and reset seeds are identical.

    The reward's discount is not part of it: the trainer passes its PPO gamma to the environment
    (the reward telescopes to the objective only under the discount GAE uses).
    """

    task: TaskName = "digits-varied"
    """Dataset: ``digits-varied`` (the benchmark: the bundled UCI 8x8 digits, 1,200/597 split, each episode
    drawing its own impaired mlp host: docs/design/benchmark.md), ``digits`` (the same data with one fixed
    impaired host), ``synthetic`` (seeded, any size,
    for tests), ``cifar10`` (python pickle batches read from ``data_dir``; never downloaded) or ``text``
    (next-byte prediction on the text corpus at ``data_dir``, else on a generated one; host ``transformer``)."""
    host: HostName = "mlp"
    """Host topology: ``mlp`` (3 hidden blocks), ``cnn`` (3 conv+BatchNorm+ReLU blocks) or ``transformer``
    (3 pre-norm decoder blocks; the ``text`` task only), more blocks when ``slot_ids`` has more columns; two
    slots per block (after it, inside it)."""
    impaired: bool = True
    """Use the impaired (too small to learn the task well alone) width preset, so seeds have something to fix."""
    slot_ids: tuple[str, ...] = ("r0c0", "r0c1", "r0c2")
    """Enabled slots, their order is the slot-head order: ``r0c{i}`` = after host block i, ``r1c{i}`` = inside it
    (rows 0-1, columns 0-15; the host gets max(3, largest column + 1) blocks)."""
    episode_length: int = 40
    """Host epochs per episode (= RL steps); the last one is a true terminal (the episode ends there). At most
    10,000 (MAX_EPISODE_LENGTH)."""
    reward_mode: RewardMode = "objective"
    """Reward: ``objective`` (dense: γ·o_{t+1} − o_t of the running objective; default) or ``sparse`` (final step
    only); both make the discounted return a positive affine function of the episode's objective."""
    data_dir: str | None = None
    """Directory of the CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) for ``task=cifar10``; for
    ``task=text`` a text file or a folder of ``.txt`` files (read in sorted order), optional."""
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    """Seed lifecycle rules (dwell times, prune age, embargo, seed budget, auto-advance)."""
    host_training: HostTraining = field(default_factory=HostTraining)
    """The host's optimiser and minibatch sizes."""
    seed_training: SeedTraining = field(default_factory=SeedTraining)
    """Each seed's optimiser."""
    governor: GovernorSettings = field(default_factory=GovernorSettings)
    """Snapshots and divergence detection (rollback thresholds)."""
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """Prices of growth in the episode's objective (what evaluation ranks policies by)."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Weights of the reward (the governor penalty, accuracy points)."""
    synthetic: SyntheticTask = field(default_factory=SyntheticTask)
    """Size and seed of the ``synthetic`` task."""
    text: TextTask = field(default_factory=TextTask)
    """Windows, split and default corpus of the ``text`` task."""
    cifar10: CifarTask = field(default_factory=CifarTask)
    """Training-time augmentation of the ``cifar10`` task."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot_ids", tuple(self.slot_ids))
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {list(TASKS)}")
        if self.host not in HOSTS:
            raise ValueError(f"unknown host {self.host!r}; expected one of {list(HOSTS)}")
        if (self.task == "text") != (self.host == "transformer"):
            raise ValueError(
                f"task {self.task!r} cannot run on host {self.host!r}: the text task needs the transformer host "
                "and the transformer host needs the text task"
            )
        check_reward_mode(self.reward_mode)
        if not isinstance(self.impaired, bool):
            raise TypeError(f"impaired must be a bool, got {self.impaired!r}")
        for slot_id in SlotConfig(self.slot_ids).slot_ids:  # validates form and uniqueness
            row, col = parse_slot_id(slot_id)
            if row >= NUM_SLOT_ROWS or col >= MAX_HOST_BLOCKS:
                last = f"r{NUM_SLOT_ROWS - 1}c{MAX_HOST_BLOCKS - 1}"
                raise ValueError(
                    f"slot {slot_id!r} does not exist: the hosts have slots r0c0..{last} ({NUM_SLOT_ROWS} rows: "
                    f"0 = after a block, 1 = inside it; up to {MAX_HOST_BLOCKS} columns = blocks)"
                )
        check_int("episode_length", self.episode_length, 1, MAX_EPISODE_LENGTH)
        if self.varies_per_episode and (self.host != "mlp" or not self.impaired):
            raise ValueError(
                f"task {self.task!r} draws an impaired mlp host per episode; it needs host='mlp' and impaired=True, "
                f"got host={self.host!r}, impaired={self.impaired!r} (task 'digits' trains one fixed host of any kind)"
            )
        if self.task == "cifar10" and not self.data_dir:
            raise ValueError("task 'cifar10' needs data_dir (a directory with the CIFAR-10 python batches)")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise TypeError(f"data_dir must be a str path or None, got {self.data_dir!r}")

    @property
    def varies_per_episode(self) -> bool:
        """Each episode draws its own host from its reset seed (and observations carry the episode block)."""
        return self.task in VARIED_TASKS

    @property
    def dataset(self) -> str:
        """The data the task trains on (a varied task's base task, else the task itself)."""
        return VARIED_TASKS.get(self.task, self.task)

    @property
    def topology(self) -> str:
        """Blueprint topology of the host (``mlp``, ``cnn`` or ``transformer``), as the contract's masks expect it."""
        return self.host

    @property
    def num_host_blocks(self) -> int:
        """Blocks the host is built with: 3, or the largest slot column + 1 when that is more."""
        return max(NUM_HOST_BLOCKS, 1 + max(parse_slot_id(s)[1] for s in self.slot_ids))

    @property
    def slot_config(self) -> SlotConfig:
        """The contract's slot configuration (slot-head order = ``slot_ids``)."""
        return SlotConfig(self.slot_ids)
