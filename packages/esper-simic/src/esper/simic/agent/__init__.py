"""Simic's PPO agent: rollout buffer, GAE, normalisers, the factored PPO loss and the update.

Layering: pure maths (:mod:`.gae`, :mod:`.ppo_loss`) ← storage and statistics (:mod:`.buffer`,
:mod:`.normalization`) ← :class:`PPOAgent` (:mod:`.ppo`). The vectorised trainer in
``esper.simic.training`` drives these; nothing here knows about environments.
"""

from esper.simic.agent.buffer import RolloutBatch, RolloutBuffer, env_minibatches
from esper.simic.agent.config import (
    DEFAULT_ENTROPY_HEAD_MULTIPLIERS,
    KL_EARLY_STOP_FACTOR,
    PPOConfig,
)
from esper.simic.agent.gae import AdvantageStats, GAEResult, generalized_advantage_estimate, normalize_advantages
from esper.simic.agent.normalization import (
    ObservationNormalizer,
    RewardNormalizer,
    RunningMeanStd,
    ValueNormalizer,
)
from esper.simic.agent.ppo import PPOAgent, UpdateMetrics
from esper.simic.agent.ppo_loss import (
    MAX_LOG_RATIO,
    PPOLoss,
    clipped_surrogate,
    explained_variance,
    masked_mean,
    ppo_loss,
    squared_error_loss,
)

__all__ = [
    "DEFAULT_ENTROPY_HEAD_MULTIPLIERS",
    "KL_EARLY_STOP_FACTOR",
    "MAX_LOG_RATIO",
    "AdvantageStats",
    "GAEResult",
    "ObservationNormalizer",
    "PPOAgent",
    "PPOConfig",
    "PPOLoss",
    "RewardNormalizer",
    "RolloutBatch",
    "RolloutBuffer",
    "RunningMeanStd",
    "UpdateMetrics",
    "ValueNormalizer",
    "clipped_surrogate",
    "env_minibatches",
    "explained_variance",
    "generalized_advantage_estimate",
    "masked_mean",
    "normalize_advantages",
    "ppo_loss",
    "squared_error_loss",
]
