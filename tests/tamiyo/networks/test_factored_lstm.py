"""FactoredRecurrentActorCritic: shapes, initialisation, gradient routing, memory, compilability."""

from __future__ import annotations

import pytest
import torch

from esper.tamiyo.contract import BlueprintAction, SlotConfig, feature_size, morphogenetic_action_space
from esper.tamiyo.networks import (
    BlueprintEmbedding,
    FactoredRecurrentActorCritic,
    choose_actions,
    score_actions,
)


def _network(num_slots: int = 3, width: int = 16, layers: int = 1) -> FactoredRecurrentActorCritic:
    torch.manual_seed(0)
    space = morphogenetic_action_space(SlotConfig.for_count(num_slots))
    return FactoredRecurrentActorCritic(
        space, feature_size(num_slots), num_slots, hidden_size=width, lstm_hidden=width, lstm_layers=layers
    )


def _inputs(num_slots: int, batch: int, steps: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, steps, feature_size(num_slots), generator=generator)
    indices = torch.randint(-1, len(BlueprintAction), (batch, steps, num_slots), generator=generator)
    return features, indices


@pytest.mark.parametrize("num_slots", [1, 2, 3, 5, 9])
@pytest.mark.parametrize("batch", [1, 4])
def test_output_shapes(num_slots: int, batch: int) -> None:
    net = _network(num_slots)
    out = net(*_inputs(num_slots, batch, steps=3))
    sizes = morphogenetic_action_space(SlotConfig.for_count(num_slots)).sizes()
    assert {h: list(t.shape) for h, t in out.logits.items()} == {h: [batch, 3, n] for h, n in sizes.items()}
    assert out.value.shape == (batch, 3)
    assert out.trunk.shape == (batch, 3, 16)
    assert [list(t.shape) for t in out.hidden] == [[1, batch, 16], [1, batch, 16]]
    assert net.q_value(out.trunk, torch.zeros(batch, 3, dtype=torch.long)).shape == (batch, 3)


def test_projection_and_stacked_layers_when_widths_differ() -> None:
    space = morphogenetic_action_space()
    net = FactoredRecurrentActorCritic(space, feature_size(3), 3, hidden_size=12, lstm_hidden=8, lstm_layers=2)
    out = net(*_inputs(3, 2, steps=2))
    assert out.trunk.shape == (2, 2, 8)
    assert [list(t.shape) for t in out.hidden] == [[2, 2, 8], [2, 2, 8]]


def test_initialisation_follows_the_reference() -> None:
    net = _network(width=16)
    b_ih, b_hh = net.lstm.layers[0].weights()[2:]
    assert b_ih[16:32].eq(1.0).all() and b_ih[:16].eq(0.0).all() and b_ih[32:].eq(0.0).all()
    assert b_hh.eq(0.0).all()
    # Orthogonal init with gain g gives singular values all equal to g (square or wide matrices).
    op_out = net.heads.policy["op"][2].weight
    torch.testing.assert_close(torch.linalg.svdvals(op_out), torch.full((op_out.shape[0],), 0.01))
    value_out = net.heads.value[-1].weight
    torch.testing.assert_close(torch.linalg.svdvals(value_out), torch.tensor([0.1]))


def test_blueprint_embedding_maps_minus_one_to_the_trainable_empty_row() -> None:
    embedding = BlueprintEmbedding(num_blueprints=13)
    out = embedding(torch.tensor([[-1, 0, 12]]))
    assert torch.equal(out[0, 0], embedding.table.weight[13])
    assert torch.equal(out[0, 2], embedding.table.weight[12])
    out.sum().backward()
    assert embedding.table.weight.grad[13].abs().sum() > 0
    with pytest.raises(IndexError):
        embedding(torch.tensor([[14]]))


def test_policy_and_value_gradients_reach_the_lstm_and_encoder() -> None:
    net = _network()
    out = net(*_inputs(3, 2, steps=4))
    (out.value.sum() + sum(logits.sum() for logits in out.logits.values())).backward()
    assert net.lstm.layers[0].flat_weights.grad.abs().sum() > 0
    assert net.encoder.net[0].weight.grad.abs().sum() > 0
    assert net.encoder.embedding.table.weight.grad.abs().sum() > 0


def test_q_loss_moves_only_the_q_head() -> None:
    net = _network()
    out = net(*_inputs(3, 2, steps=4))
    net.q_value(out.trunk, torch.randint(0, 6, (2, 4))).pow(2).mean().backward()
    for name, param in net.named_parameters():
        if name.startswith("heads.q."):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_hidden_state_carries_history() -> None:
    net = _network()
    features, indices = _inputs(3, 1, steps=3)
    with torch.no_grad():
        _, _, _, after_a = net(features[:, :2], indices[:, :2])
        _, _, _, after_b = net(-features[:, :2], indices[:, :2])
        last_a = net(features[:, 2:], indices[:, 2:], after_a)
        last_b = net(features[:, 2:], indices[:, 2:], after_b)
    assert not torch.equal(last_a.value, last_b.value)
    assert not torch.equal(last_a.logits["op"], last_b.logits["op"])


def test_sequence_matches_step_by_step() -> None:
    """Feeding T steps at once or one at a time gives the same outputs up to GEMM rounding.

    Not bit-identical in general: BLAS may pick other kernels for ``[B*T, K]`` than for ``[B, K]``
    operands, so only same-shape calls (the T=1 rollout/update parity) are exact.
    """
    net = _network()
    features, indices = _inputs(3, 2, steps=5)
    whole = net(features, indices)
    hidden = None
    values = []
    for t in range(5):
        step = net(features[:, t : t + 1], indices[:, t : t + 1], hidden)
        hidden = step.hidden
        values.append(step.value)
    torch.testing.assert_close(torch.cat(values, dim=1), whole.value, rtol=1e-5, atol=1e-6)
    for a, b in zip(hidden, whole.hidden, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # Dynamo tracing takes seconds; its import alone adds seconds to any process that loads it
def test_evaluation_path_compiles_without_graph_breaks() -> None:
    """Dynamo captures network + canonicalisation + FP32 scoring + Q as one graph (``fullgraph``).

    The ``eager`` backend checks graph capture only, which is what graph breaks are about; code
    generation is exercised by the slow compiled-bundle test. The counting backend proves the
    call really went through Dynamo (one frame, the LSTM inside it), not a silent eager fallback.
    """
    net = _network(num_slots=2, width=8)
    space = morphogenetic_action_space(SlotConfig.for_count(2))
    floors = {"op": 0.15, "blueprint": 0.1}

    def evaluate(features, indices, masks, actions):  # type: ignore[no-untyped-def]
        out = net(features, indices)
        scores = score_actions(space, floors, out.logits, masks, actions)
        return scores.log_probs, scores.entropies, out.value, net.q_value(out.trunk, actions["op"])

    features, indices = _inputs(2, 3, steps=2)
    masks = {h: torch.ones(3, 2, n, dtype=torch.bool) for h, n in space.sizes().items()}
    generator = torch.Generator().manual_seed(2)
    actions = {h: torch.randint(0, n, (3, 2), generator=generator) for h, n in space.sizes().items()}
    from torch._dynamo.testing import CompileCounterWithBackend  # imported here: Dynamo costs seconds to import

    torch._dynamo.reset()
    backend = CompileCounterWithBackend("eager")
    compiled = torch.compile(evaluate, fullgraph=True, backend=backend)
    got = compiled(features, indices, masks, actions)
    assert backend.frame_count == 1
    (graph,) = backend.graphs
    assert any(node.target is torch.lstm for node in graph.graph.nodes)
    expected = evaluate(features, indices, masks, actions)
    assert all(torch.equal(got[0][h], expected[0][h]) for h in space.head_names)
    assert torch.equal(got[3], expected[3])


@pytest.mark.slow
def test_rollout_leg_compiles_without_graph_breaks() -> None:
    space = morphogenetic_action_space(SlotConfig.for_count(2))
    logits = {h: torch.randn(4, n) for h, n in space.sizes().items()}
    masks = {h: torch.ones(4, n, dtype=torch.bool) for h, n in space.sizes().items()}
    slot_by_op = torch.ones(4, space.num_ops, 2, dtype=torch.bool)

    def choose(logits, masks, slot_by_op):  # type: ignore[no-untyped-def]
        return choose_actions(space, {"op": 0.1}, logits, masks, slot_by_op, deterministic=True)

    from torch._dynamo.testing import CompileCounterWithBackend  # imported here: Dynamo costs seconds to import

    torch._dynamo.reset()
    backend = CompileCounterWithBackend("eager")
    compiled = torch.compile(choose, fullgraph=True, backend=backend)
    got, expected = compiled(logits, masks, slot_by_op), choose(logits, masks, slot_by_op)
    assert backend.frame_count == 1
    assert all(torch.equal(got.log_probs[h], expected.log_probs[h]) for h in space.head_names)
