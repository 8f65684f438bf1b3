"""``FactoredRecurrentActorCritic``: encoder → residual LSTM → factored heads, V(s), Q(s, op).

Architecture and initialisation follow esper-lite's network, generic over the
contract's ``ActionSpace``. The LSTM is called through the functional ``torch.lstm`` with this
module's own parameters rather than an ``nn.LSTM`` submodule: Dynamo graph-breaks on ``nn.LSTM``
modules (``torch._dynamo.config.allow_rnn``), and the evaluation path must compile with
``fullgraph=True``. Each layer keeps its four weight tensors as views of one flat parameter in
cuDNN's layout, so CUDA runs the fused kernel without re-packing weights on every call.
"""

from __future__ import annotations

import torch
from torch import nn

from esper.tamiyo.contract import ActionSpace
from esper.tamiyo.networks.encoder import ObservationEncoder
from esper.tamiyo.networks.heads import ActorCriticHeads, ActorCriticOutput, head_width, init_linear

#: Initial forget-gate bias: remember by default early in training (esper-lite's value, 1 layer).
FORGET_GATE_BIAS = 1.0


class LSTMLayer(nn.Module):
    """One LSTM layer ``[B, T, H] → [B, T, H]`` over a flat parameter ``[w_ih | w_hh | b_ih | b_hh]``.

    Weights are orthogonal (per matrix), biases zero except the forget-gate slice of ``b_ih``
    (gate order i, f, g, o), which is ``FORGET_GATE_BIAS``; ``b_hh`` stays 0 so the effective
    forget bias is exactly that value.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        gates = 4 * hidden_size
        self.flat_weights = nn.Parameter(torch.empty(2 * gates * hidden_size + 2 * gates))
        w_ih, w_hh, b_ih, b_hh = self.weights()
        with torch.no_grad():
            nn.init.orthogonal_(w_ih)
            nn.init.orthogonal_(w_hh)
            b_ih.zero_()
            b_hh.zero_()
            b_ih[hidden_size : 2 * hidden_size] = FORGET_GATE_BIAS

    def weights(self) -> list[torch.Tensor]:
        """Views ``[w_ih [4H, H], w_hh [4H, H], b_ih [4H], b_hh [4H]]`` of the flat parameter."""
        h, gates = self.hidden_size, 4 * self.hidden_size
        w_ih, w_hh, b_ih, b_hh = self.flat_weights.split([gates * h, gates * h, gates, gates])
        return [w_ih.view(gates, h), w_hh.view(gates, h), b_ih, b_hh]

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [B, T, H]``, state ``h, c [1, B, H]`` → output ``[B, T, H]`` and final ``h, c``.

        ``train=True`` (dropout is 0, so it changes nothing numerically) because cuDNN only
        supports backward through an RNN run in training mode; both legs use the same flag.
        """
        output, h_n, c_n = torch.lstm(x, (h, c), self.weights(), True, 1, 0.0, True, False, True)
        return output, h_n, c_n


class ResidualLSTM(nn.Module):
    """Stacked LSTM layers, each ``x + LayerNorm(LSTM(x))``, after a projection to ``hidden_size``.

    The residual path keeps gradients reaching the first layer in deep stacks (in esper-lite a plain
    12-layer stack let only a few percent of the gradient through).
    Hidden state ``(h, c)`` is ``[num_layers, B, hidden_size]`` each.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.input_proj: nn.Module = (
            nn.Identity() if input_size == hidden_size else init_linear(nn.Linear(input_size, hidden_size))
        )
        self.layers = nn.ModuleList(LSTMLayer(hidden_size) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(num_layers))

    def forward(
        self, x: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h0, c0 = hidden
        x = self.input_proj(x)
        h_out, c_out = [], []
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            output, h_n, c_n = layer(x, h0[i : i + 1], c0[i : i + 1])
            x = x + norm(output)
            h_out.append(h_n)
            c_out.append(c_n)
        return x, (torch.cat(h_out), torch.cat(c_out))


class FactoredRecurrentActorCritic(nn.Module):
    """Recurrent actor-critic with one categorical head per action head of ``action_space``.

    ``features [B, T, F]`` ++ flattened blueprint embeddings ``[B, T, S*4]`` → Linear →
    LayerNorm → ReLU (``hidden_size``) → residual LSTM (``lstm_hidden``) → per-head MLPs
    (``lstm_hidden // 2`` wide), V(s) and Q(s, op) on detached LSTM features.

    Args:
        action_space: heads and their sizes; the op head's size is Q's one-hot width.
        feature_dim: F, the observation vector length.
        num_slots: S, the number of blueprint indices per step.
        hidden_size: encoder width.
        lstm_hidden: recurrent width H.
        lstm_layers: residual LSTM layers.
        num_blueprints: rows of the blueprint embedding besides the "empty" row.
    """

    def __init__(
        self,
        action_space: ActionSpace,
        feature_dim: int,
        num_slots: int,
        *,
        hidden_size: int = 128,
        lstm_hidden: int = 128,
        lstm_layers: int = 1,
        num_blueprints: int = 13,
    ) -> None:
        super().__init__()
        head_hidden = head_width(lstm_hidden, name="lstm_hidden")
        self.lstm_hidden = lstm_hidden
        self.lstm_layers = lstm_layers
        self.encoder = ObservationEncoder(feature_dim, num_slots, hidden_size, num_blueprints)
        self.lstm = ResidualLSTM(hidden_size, lstm_hidden, lstm_layers)
        self.heads = ActorCriticHeads(action_space, lstm_hidden, head_hidden)

    @property
    def hidden_dim(self) -> int:
        """Width H of the recurrent state."""
        return self.lstm_hidden

    def initial_hidden(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, c)``, each ``[lstm_layers, batch_size, H]`` on this module's device and dtype."""
        weight = self.lstm.layers[0].flat_weights
        zeros = weight.new_zeros(self.lstm_layers, batch_size, self.lstm_hidden)
        return zeros, zeros.clone()

    def forward(
        self,
        features: torch.Tensor,
        blueprint_indices: torch.Tensor,
        hidden: tuple[torch.Tensor, ...] | None = None,
    ) -> ActorCriticOutput:
        """Run ``features [B, T, F]`` / ``blueprint_indices [B, T, S]`` from ``hidden`` (None → zeros).

        Returns raw logits per head ``[B, T, n]``, V(s) ``[B, T]``, the LSTM output ``[B, T, H]``
        and the final ``(h, c)``.
        """
        if hidden is None:
            hidden = self.initial_hidden(features.shape[0])
        h0, c0 = hidden
        encoded = self.encoder(features, blueprint_indices)
        trunk, new_hidden = self.lstm(encoded, (h0, c0))
        logits, value = self.heads(trunk)
        return ActorCriticOutput(logits, value, trunk, new_hidden)

    def q_value(self, trunk: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
        """Auxiliary Q(s, op) ``[B, T]`` on detached ``trunk [B, T, H]`` and ``ops [B, T]``."""
        return self.heads.q_value(trunk, ops)

    def compile_submodules(self, mode: str) -> None:
        """Compile the encoder and the heads in place; the LSTM stays on its fused eager kernel.

        Inductor decomposes ``aten.lstm`` into a Python loop unrolled over T when gradients are
        needed (and on every GPU), so compiling the recurrent core costs a minute of compile time
        per sequence length for no speed-up over cuDNN/oneDNN. In-place ``nn.Module.compile``
        keeps ``state_dict`` keys unchanged.
        """
        self.encoder.compile(mode=mode, fullgraph=True)
        self.heads.compile(mode=mode, fullgraph=True)
