"""The Tamiyo contract: the vocabulary that the policy side and the training side share.

Stages and transitions, slots, the action space and its masks, and the observation layout. Pure
Python + torch, no model code; the training side may import this package freely.
"""

from esper.tamiyo.contract.action_space import (
    HEAD_NAMES,
    OP_RELEVANT_HEADS,
    ActionSpace,
    morphogenetic_action_space,
)
from esper.tamiyo.contract.actions import (
    ALPHA_CURVES,
    ALPHA_SPEED_TICKS,
    ALPHA_TARGET_VALUES,
    STYLE_BLENDS,
    TEMPO_EPOCHS,
    TOPOLOGIES,
    TOPOLOGY_BLUEPRINTS,
    AlphaAlgorithm,
    AlphaCurve,
    AlphaCurveAction,
    AlphaMode,
    AlphaSpeedAction,
    AlphaTargetAction,
    BlueprintAction,
    GerminationStyle,
    LifecycleOp,
    TempoAction,
    topology_blueprints,
)
from esper.tamiyo.contract.masks import (
    DEFAULT_MIN_PRUNE_AGE,
    ActionMasks,
    EmptyMaskError,
    SlotState,
    check_masks_nonempty,
    compute_action_masks,
    compute_batch_masks,
    op_conditioned_slot_mask,
    stack_masks,
)
from esper.tamiyo.contract.observation import (
    BASE_FEATURE_SIZE,
    BASE_FIELDS,
    HISTORY_LENGTH,
    SLOT_FEATURE_SIZE,
    SLOT_FIELDS,
    SYMLOG_SCALE,
    UNKNOWN,
    Observation,
    ObservationLayout,
    feature_size,
    symexp,
    symlog,
)
from esper.tamiyo.contract.slots import SlotConfig, parse_slot_id
from esper.tamiyo.contract.stages import (
    ACTIVE_STAGES,
    ADVANCEABLE_STAGES,
    FAILURE_STAGES,
    GERMINATION_BLOCKING_STAGES,
    PRUNABLE_STAGES,
    STAGE_ORDER,
    VALID_TRANSITIONS,
    IllegalTransitionError,
    SeedStage,
    can_transition,
    check_transition,
    is_terminal_stage,
)

__all__ = [
    "ACTIVE_STAGES", "ADVANCEABLE_STAGES", "ALPHA_CURVES", "ALPHA_SPEED_TICKS", "ALPHA_TARGET_VALUES",
    "BASE_FEATURE_SIZE", "BASE_FIELDS", "DEFAULT_MIN_PRUNE_AGE", "FAILURE_STAGES",
    "GERMINATION_BLOCKING_STAGES", "HEAD_NAMES", "HISTORY_LENGTH", "OP_RELEVANT_HEADS", "PRUNABLE_STAGES",
    "SLOT_FEATURE_SIZE", "SLOT_FIELDS", "STAGE_ORDER", "STYLE_BLENDS", "SYMLOG_SCALE", "TEMPO_EPOCHS",
    "TOPOLOGIES", "TOPOLOGY_BLUEPRINTS", "UNKNOWN", "VALID_TRANSITIONS",
    "ActionMasks", "ActionSpace", "AlphaAlgorithm", "AlphaCurve", "AlphaCurveAction", "AlphaMode",
    "AlphaSpeedAction", "AlphaTargetAction", "BlueprintAction", "EmptyMaskError", "GerminationStyle",
    "IllegalTransitionError", "LifecycleOp", "Observation", "ObservationLayout", "SeedStage", "SlotConfig",
    "SlotState", "TempoAction",
    "can_transition", "check_masks_nonempty", "check_transition", "compute_action_masks", "compute_batch_masks",
    "feature_size", "is_terminal_stage", "morphogenetic_action_space", "op_conditioned_slot_mask",
    "parse_slot_id", "stack_masks", "symexp", "symlog", "topology_blueprints",
]
