"""``MLPPolicyBundle`` (policy type ``mlp``): the same heads and masking on a feed-forward trunk."""

from __future__ import annotations

from torch import nn

from esper.tamiyo.contract import ActionSpace
from esper.tamiyo.networks import FeedForwardActorCritic, NetworkSize
from esper.tamiyo.policy._trainable import NUM_BLUEPRINTS, TrainablePolicyBundle


class MLPPolicyBundle(TrainablePolicyBundle):
    """Memoryless ablation of ``lstm``: ``is_recurrent`` False, ``initial_hidden`` None, ``hidden_dim`` 0.

    Constructor keywords are those of the ``lstm`` bundle so both build from one config;
    ``lstm_hidden`` is the width of the second trunk layer here. Registered through the
    ``esper.policies`` entry point ``mlp``.
    """

    def build_network(
        self, action_space: ActionSpace, feature_dim: int, num_slots: int, size: NetworkSize
    ) -> nn.Module:
        return FeedForwardActorCritic(
            action_space,
            feature_dim,
            num_slots,
            hidden_size=size.hidden_size,
            trunk_hidden=size.lstm_hidden,
            num_blueprints=NUM_BLUEPRINTS,
        )
