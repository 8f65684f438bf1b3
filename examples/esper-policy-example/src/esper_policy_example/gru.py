"""``GRUPolicyBundle`` (policy type ``example-gru``): Esper's factored actor-critic with a GRU trunk.

A worked example of a third-party policy package. It reuses esper-tamiyo's public building
blocks, so everything the trainer relies on (mask handling, op-conditioned canonicalisation, FP32
log-probs shared by the rollout and update legs, weights I/O, compilation) comes for free:

* :class:`esper.tamiyo.policy.TrainablePolicyBundle` is the ``PolicyBundle`` plumbing; a subclass
  only builds its network in ``build_network``, the documented extension point.
* :class:`esper.tamiyo.networks.ObservationEncoder` and :class:`~esper.tamiyo.networks.ActorCriticHeads`
  are the encoder and the per-head / V / Q heads; the network returns an
  :class:`~esper.tamiyo.networks.ActorCriticOutput`.

What is new here is only the trunk: one GRU layer followed by LayerNorm. The package advertises
the bundle through its ``pyproject.toml``::

    [project.entry-points."esper.policies"]
    example-gru = "esper_policy_example.gru:GRUPolicyBundle"
"""

from __future__ import annotations

import torch
from torch import nn

from esper.tamiyo.contract import ActionSpace, BlueprintAction
from esper.tamiyo.networks import ActorCriticHeads, ActorCriticOutput, NetworkSize, ObservationEncoder
from esper.tamiyo.policy import TrainablePolicyBundle

__all__ = ["GRUActorCritic", "GRUPolicyBundle"]


class GRUActorCritic(nn.Module):
    """``features [B, T, F]`` ++ blueprint embeddings → encoder → GRU → LayerNorm → heads, V(s), Q(s, op).

    Hidden state is ``(h,)`` with ``h [1, B, gru_hidden]`` (batch at dim 1, as the protocol asks).

    Args:
        action_space: the heads to predict.
        feature_dim: F, the observation length.
        num_slots: S, blueprint indices per step.
        hidden_size: encoder width.
        gru_hidden: recurrent width H; the heads are ``H // 2`` wide.
    """

    def __init__(
        self, action_space: ActionSpace, feature_dim: int, num_slots: int, *, hidden_size: int, gru_hidden: int
    ) -> None:
        super().__init__()
        self.gru_hidden = gru_hidden
        self.encoder = ObservationEncoder(feature_dim, num_slots, hidden_size, len(BlueprintAction))
        self.gru = nn.GRU(hidden_size, gru_hidden, batch_first=True)
        self.norm = nn.LayerNorm(gru_hidden)
        self.heads = ActorCriticHeads(action_space, gru_hidden, gru_hidden // 2)
        for name, weight in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.orthogonal_(weight)
            else:
                nn.init.zeros_(weight)

    @property
    def hidden_dim(self) -> int:
        """Width H of the recurrent state."""
        return self.gru_hidden

    def initial_hidden(self, batch_size: int) -> tuple[torch.Tensor]:
        """Zero ``(h,)`` with ``h [1, batch_size, H]`` on this module's device and dtype."""
        return (self.norm.weight.new_zeros(1, batch_size, self.gru_hidden),)

    def forward(
        self, features: torch.Tensor, blueprint_indices: torch.Tensor, hidden: tuple[torch.Tensor, ...] | None = None
    ) -> ActorCriticOutput:
        """Logits ``{head: [B, T, n]}``, V(s) ``[B, T]``, trunk ``[B, T, H]`` and the final ``(h,)``."""
        (h0,) = self.initial_hidden(features.shape[0]) if hidden is None else hidden
        output, h_n = self.gru(self.encoder(features, blueprint_indices), h0)
        trunk = self.norm(output)
        logits, value = self.heads(trunk)
        return ActorCriticOutput(logits, value, trunk, (h_n,))

    def q_value(self, trunk: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        """Auxiliary Q(s, op) ``[B, T]`` on detached ``trunk`` (the heads detach it)."""
        return self.heads.q_value(trunk, ops)

    def compile_submodules(self, mode: str) -> None:
        """Compile the encoder and heads in place; the GRU stays on its fused eager kernel
        (Dynamo graph-breaks on ``nn.GRU``)."""
        self.encoder.compile(mode=mode, fullgraph=True)
        self.heads.compile(mode=mode, fullgraph=True)


class GRUPolicyBundle(TrainablePolicyBundle):
    """Recurrent policy with a GRU trunk: ``hidden`` is ``(h,)``, ``h [1, B, lstm_hidden]``.

    Constructor keywords are those of :class:`esper.tamiyo.policy.TrainablePolicyBundle`
    (``slot_config``, ``feature_dim``, ``hidden_size``, ``lstm_hidden`` = the recurrent width,
    ``preset``, ``probability_floor``, ``action_space``), so the same training config works for
    ``lstm`` and ``example-gru``.
    """

    def build_network(
        self, action_space: ActionSpace, feature_dim: int, num_slots: int, size: NetworkSize
    ) -> nn.Module:
        return GRUActorCritic(
            action_space, feature_dim, num_slots, hidden_size=size.hidden_size, gru_hidden=size.lstm_hidden
        )
