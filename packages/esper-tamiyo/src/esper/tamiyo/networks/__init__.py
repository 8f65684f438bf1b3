"""Tamiyo's neural networks and the masked-distribution maths both policy legs share.

``FactoredRecurrentActorCritic`` (the ``lstm`` bundle) and ``FeedForwardActorCritic`` (``mlp``)
share their encoder and heads; ``choose_actions`` / ``score_actions`` are the rollout and update
legs, built on the FP32 helpers of ``distributions`` and the op-conditioned canonicalisation of
``canonical``. Simic never imports this package: it trains through ``esper.tamiyo.policy``.
"""

from esper.tamiyo.networks.canonical import canonicalise_masks, relevant_for, with_op_slot_mask
from esper.tamiyo.networks.distributions import (
    MASKED_LOGIT,
    apply_probability_floor,
    check_nonempty,
    greedy_actions,
    head_log_probs,
    log_prob_of,
    masked_logits,
    normalised_entropy,
    sample_actions,
)
from esper.tamiyo.networks.embedding import BLUEPRINT_EMBED_DIM, BlueprintEmbedding
from esper.tamiyo.networks.encoder import ObservationEncoder
from esper.tamiyo.networks.factored_lstm import FactoredRecurrentActorCritic, LSTMLayer, ResidualLSTM
from esper.tamiyo.networks.feedforward import FeedForwardActorCritic
from esper.tamiyo.networks.heads import ActorCriticHeads, ActorCriticOutput, init_linear, policy_head, value_mlp
from esper.tamiyo.networks.presets import NETWORK_PRESETS, NetworkSize, resolve_network_size
from esper.tamiyo.networks.scoring import HeadScores, choose_actions, score_actions

__all__ = [
    "BLUEPRINT_EMBED_DIM",
    "MASKED_LOGIT",
    "NETWORK_PRESETS",
    "ActorCriticHeads",
    "ActorCriticOutput",
    "BlueprintEmbedding",
    "FactoredRecurrentActorCritic",
    "FeedForwardActorCritic",
    "HeadScores",
    "LSTMLayer",
    "NetworkSize",
    "ObservationEncoder",
    "ResidualLSTM",
    "apply_probability_floor",
    "canonicalise_masks",
    "check_nonempty",
    "choose_actions",
    "greedy_actions",
    "head_log_probs",
    "init_linear",
    "log_prob_of",
    "masked_logits",
    "normalised_entropy",
    "policy_head",
    "relevant_for",
    "resolve_network_size",
    "sample_actions",
    "score_actions",
    "value_mlp",
    "with_op_slot_mask",
]
