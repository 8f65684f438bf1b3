"""The morphogenetic environment: a host network training on a task, with seed slots Tamiyo controls.

Public API: :class:`EnvConfig`, :class:`MorphogeneticEnv` and :class:`VectorEnv` with
their frozen results, plus the building blocks (tasks, hosts, blueprints, alpha controller,
blending, slots, validation, governor, rewards, signals) for tests and benchmarks. The optional
gymnasium adapter lives in ``esper.simic.env.gym_adapter`` and is not imported here.
"""

from esper.simic.env.alpha import AlphaController, AlphaRetargetError, curve_progress
from esper.simic.env.blending import blend, blend_add, blend_gate, blend_multiply, straight_through
from esper.simic.env.blueprints import BLUEPRINT_BUILDERS, build_blueprint, build_gate
from esper.simic.env.config import (
    HOSTS,
    TASKS,
    CifarTask,
    EnvConfig,
    GovernorSettings,
    HostTraining,
    LifecycleSettings,
    SeedTraining,
    SyntheticTask,
    TextTask,
)
from esper.simic.env.datasets import (
    DataError,
    TaskData,
    load_cifar10,
    load_digits,
    load_task,
    load_text,
    make_synthetic,
    read_corpus,
)
from esper.simic.env.governor import Governor, GovernorVerdict, Snapshot
from esper.simic.env.hosts import HOST_PRESETS, TASK_HOST_PRESETS, HostNetwork, HostPreset, build_host, host_preset
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.morphogenetic import EpisodeOverError, MorphogeneticEnv
from esper.simic.env.objective import ObjectiveConfig, epoch_compute, objective_value
from esper.simic.env.results import (
    EnvReset,
    EnvStep,
    EpisodeSummary,
    ResetInfo,
    SlotTrace,
    StepInfo,
    VectorReset,
    VectorStep,
)
from esper.simic.env.rewards import (
    DEFAULT_GAMMA,
    REWARD_MODES,
    ObjectiveTerms,
    RewardBreakdown,
    RewardConfig,
    RewardInputs,
    compute_reward,
    objective_terms,
)
from esper.simic.env.signals import SignalTracker, SignalTrackerConfig, TrackerSignals
from esper.simic.env.slot import GradientStats, LifecycleError, SeedSlot, SlotSettings
from esper.simic.env.validation import ValidationResult, validate
from esper.simic.env.vector import VectorEnv

__all__ = [
    "BLUEPRINT_BUILDERS",
    "DEFAULT_GAMMA",
    "HOSTS",
    "HOST_PRESETS",
    "REWARD_MODES",
    "TASKS",
    "TASK_HOST_PRESETS",
    "AlphaController",
    "AlphaRetargetError",
    "CifarTask",
    "DataError",
    "EnvConfig",
    "EnvReset",
    "EnvStep",
    "EpisodeOverError",
    "EpisodeSummary",
    "Governor",
    "GovernorSettings",
    "GovernorVerdict",
    "GradientStats",
    "HostNetwork",
    "HostPreset",
    "HostTraining",
    "LifecycleError",
    "LifecycleSettings",
    "MorphogeneticEnv",
    "MorphogeneticModel",
    "ObjectiveConfig",
    "ObjectiveTerms",
    "ResetInfo",
    "RewardBreakdown",
    "RewardConfig",
    "RewardInputs",
    "SeedSlot",
    "SeedTraining",
    "SignalTracker",
    "SignalTrackerConfig",
    "SlotSettings",
    "SlotTrace",
    "Snapshot",
    "StepInfo",
    "SyntheticTask",
    "TaskData",
    "TextTask",
    "TrackerSignals",
    "ValidationResult",
    "VectorEnv",
    "VectorReset",
    "VectorStep",
    "blend",
    "blend_add",
    "blend_gate",
    "blend_multiply",
    "build_blueprint",
    "build_gate",
    "build_host",
    "compute_reward",
    "curve_progress",
    "epoch_compute",
    "host_preset",
    "load_cifar10",
    "load_digits",
    "load_task",
    "load_text",
    "make_synthetic",
    "objective_terms",
    "objective_value",
    "read_corpus",
    "straight_through",
    "validate",
]
