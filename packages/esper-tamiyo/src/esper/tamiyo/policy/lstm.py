"""``LSTMPolicyBundle`` (policy type ``lstm``): the factored recurrent actor-critic as a ``PolicyBundle``."""

from __future__ import annotations

from torch import nn

from esper.tamiyo.contract import ActionSpace
from esper.tamiyo.networks import FactoredRecurrentActorCritic, NetworkSize
from esper.tamiyo.policy._trainable import NUM_BLUEPRINTS, TrainablePolicyBundle


class LSTMPolicyBundle(TrainablePolicyBundle):
    """Esper's main policy: residual-LSTM trunk, one head per action head, V(s) and auxiliary Q(s, op).

    Recurrent: ``hidden`` is ``(h, c)``, each ``[1, B, lstm_hidden]``. Constructor keywords are
    those of :class:`~esper.tamiyo.policy._trainable.TrainablePolicyBundle`; registered through
    esper-tamiyo's ``esper.policies`` entry point ``lstm``.
    """

    def build_network(
        self, action_space: ActionSpace, feature_dim: int, num_slots: int, size: NetworkSize
    ) -> nn.Module:
        return FactoredRecurrentActorCritic(
            action_space,
            feature_dim,
            num_slots,
            hidden_size=size.hidden_size,
            lstm_hidden=size.lstm_hidden,
            num_blueprints=NUM_BLUEPRINTS,
        )
