"""``FeedForwardActorCritic``: the recurrent network's encoder and heads with an MLP trunk instead.

For ablations ("does memory matter?"): everything but the trunk is shared with
:class:`~esper.tamiyo.networks.factored_lstm.FactoredRecurrentActorCritic`, so the comparison
changes one thing. Each time step is scored independently; there is no hidden state.
"""

from __future__ import annotations

import torch
from torch import nn

from esper.tamiyo.contract import ActionSpace
from esper.tamiyo.networks.encoder import ObservationEncoder
from esper.tamiyo.networks.heads import ActorCriticHeads, ActorCriticOutput, head_width, init_linear


class FeedForwardActorCritic(nn.Module):
    """``features [B, T, F]`` ++ blueprint embeddings → encoder (``hidden_size``) → Linear →
    LayerNorm → ReLU (``trunk_hidden``) → per-head MLPs (``trunk_hidden // 2``), V(s), Q(s, op).

    Args mirror :class:`FactoredRecurrentActorCritic`, with ``trunk_hidden`` in place of
    ``lstm_hidden``.
    """

    def __init__(
        self,
        action_space: ActionSpace,
        feature_dim: int,
        num_slots: int,
        *,
        hidden_size: int = 128,
        trunk_hidden: int = 128,
        num_blueprints: int = 13,
    ) -> None:
        super().__init__()
        head_hidden = head_width(trunk_hidden, name="trunk_hidden")
        self.encoder = ObservationEncoder(feature_dim, num_slots, hidden_size, num_blueprints)
        self.trunk = nn.Sequential(
            init_linear(nn.Linear(hidden_size, trunk_hidden)),
            nn.LayerNorm(trunk_hidden),
            nn.ReLU(),
        )
        self.heads = ActorCriticHeads(action_space, trunk_hidden, head_hidden)

    @property
    def hidden_dim(self) -> int:
        """0: no recurrent state."""
        return 0

    def initial_hidden(self, batch_size: int) -> None:
        """None: a feed-forward trunk has no state to reset."""
        return None

    def forward(
        self,
        features: torch.Tensor,
        blueprint_indices: torch.Tensor,
        hidden: tuple[torch.Tensor, ...] | None = None,
    ) -> ActorCriticOutput:
        """Logits ``[B, T, n]`` per head, V(s) ``[B, T]`` and trunk ``[B, T, H]``; ``hidden`` is ignored."""
        trunk = self.trunk(self.encoder(features, blueprint_indices))
        logits, value = self.heads(trunk)
        return ActorCriticOutput(logits, value, trunk, None)

    def q_value(self, trunk: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        """Auxiliary Q(s, op) ``[B, T]`` on detached ``trunk`` and ``ops [B, T]``."""
        return self.heads.q_value(trunk, ops)

    def compile_submodules(self, mode: str) -> None:
        """Compile the whole (loop-free) network in place; ``state_dict`` keys are unchanged."""
        self.compile(mode=mode, fullgraph=True)
