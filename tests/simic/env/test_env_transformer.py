"""The transformer host and its blueprints: shapes, causality, the impaired preset, counterfactual validation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from esper.simic.env import EnvConfig, HostTraining, LifecycleSettings, MorphogeneticEnv, TextTask
from esper.simic.env.alpha import AlphaController
from esper.simic.env.blueprints import build_blueprint, build_gate
from esper.simic.env.hosts import HOST_PRESETS, HostPreset, build_host
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.slot import GradientStats, SlotSettings
from esper.simic.env.validation import validate
from esper.tamiyo.contract import BlueprintAction, GerminationStyle, LifecycleOp, SeedStage, topology_blueprints

TOKENS, VOCAB, WIDTH = 8, 256, 8
TINY = HostPreset((8, 8, 8), embed_dim=WIDTH, num_heads=2)


def _host(preset: HostPreset = TINY, seed: int = 0) -> MorphogeneticModel:
    host = build_host(
        "transformer",
        impaired=False,
        input_shape=(TOKENS,),
        num_classes=VOCAB,
        generator=torch.Generator().manual_seed(seed),
        preset=preset,
    )
    return MorphogeneticModel(host, ("r0c0", "r0c1", "r0c2"), SlotSettings(training_dwell=0))


def _tokens(batch: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, TOKENS), generator=torch.Generator().manual_seed(seed))


def test_host_shapes_and_parameter_count() -> None:
    model = _host()
    x = _tokens()
    assert model(x).shape == (5, TOKENS, VOCAB)
    assert model.host.slot_shapes == ((TOKENS, WIDTH),) * 3
    # Embeddings 256·8 + 8·8; per block 2 LayerNorms (4·8), QKV 8·24 + 24, proj 8·8 + 8, MLP 8·8 + 8 + 8·8 + 8;
    # head LayerNorm 2·8 + Linear 8·256 + 256.
    block = 4 * 8 + (8 * 24 + 24) + (8 * 8 + 8) + 2 * (8 * 8 + 8)
    assert model.host.num_params == 256 * 8 + 8 * 8 + 3 * block + 2 * 8 + 8 * 256 + 256


def test_host_is_seeded_and_causal() -> None:
    model = _host()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), _host().parameters(), strict=True))
    x = _tokens()
    changed = x.clone()
    changed[:, 5] = (changed[:, 5] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.equal(a[:, :5], b[:, :5])  # positions before the change cannot see it
    assert not torch.equal(a[:, 5:], b[:, 5:])


def test_impaired_host_has_no_context() -> None:
    preset = HOST_PRESETS[("transformer", True)]
    assert preset.attention_window == 1
    model = _host(HostPreset((8, 8, 8), embed_dim=WIDTH, num_heads=2, attention_window=1))
    x = _tokens()
    changed = x.clone()
    changed[:, 3] = (changed[:, 3] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.equal(torch.cat([a[:, :3], a[:, 4:]], 1), torch.cat([b[:, :3], b[:, 4:]], 1))
    assert not torch.equal(a[:, 3], b[:, 3])


def test_image_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"needs token windows \(input shape \(T,\)\)"):
        build_host("transformer", impaired=False, input_shape=(1, 8, 8), num_classes=10, generator=torch.Generator())


@pytest.mark.parametrize("blueprint", topology_blueprints("transformer"), ids=lambda b: b.blueprint_id)
def test_blueprints_are_causal_identities_at_birth(blueprint: BlueprintAction) -> None:
    seed = build_blueprint("transformer", blueprint, (TOKENS, WIDTH), torch.Generator().manual_seed(0))
    x = torch.randn(3, TOKENS, WIDTH)
    assert torch.equal(seed(x), x)
    with torch.no_grad():
        for p in seed.parameters():
            p.add_(0.3)
    changed = x.clone()
    changed[:, 6] = torch.randn(3, WIDTH)
    a, b = seed(x), seed(changed)
    assert not torch.equal(a, x)  # a trained seed does something
    assert torch.equal(a[:, :6], b[:, :6])  # and never reads ahead


@pytest.mark.parametrize(
    "blueprint,count",
    [
        (BlueprintAction.LORA, 2 * WIDTH * 4),
        (BlueprintAction.LORA_LARGE, 2 * WIDTH * 16),
        (BlueprintAction.ATTENTION, 2 * WIDTH + WIDTH * 3 * WIDTH + 3 * WIDTH + WIDTH * WIDTH + WIDTH),
        (BlueprintAction.MLP_SMALL, 2 * (WIDTH * WIDTH + WIDTH)),
        (BlueprintAction.MLP, 2 * 4 * WIDTH * WIDTH + 4 * WIDTH + WIDTH),
        (BlueprintAction.NORM, 2 * WIDTH + 1),
    ],
)
def test_blueprint_parameter_counts(blueprint: BlueprintAction, count: int) -> None:
    seed = build_blueprint("transformer", blueprint, (TOKENS, WIDTH), torch.Generator())
    assert sum(p.numel() for p in seed.parameters()) == count


def test_flex_attention_sees_a_sliding_window() -> None:
    seed = build_blueprint("transformer", BlueprintAction.FLEX_ATTENTION, (16, WIDTH), torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in seed.parameters():
            p.add_(0.3)
    x = torch.randn(2, 16, WIDTH)
    changed = x.clone()
    changed[:, 2] = torch.randn(2, WIDTH)
    a, b = seed(x), seed(changed)
    assert not torch.equal(a[:, 9], b[:, 9])  # 9 − 8 < 2: inside the window
    assert torch.equal(a[:, 10:], b[:, 10:])  # outside it


def test_gate_is_per_token_and_starts_at_one_half() -> None:
    gate = build_gate((TOKENS, WIDTH), torch.Generator().manual_seed(0))
    out = gate(torch.randn(4, TOKENS, WIDTH))
    assert out.shape == (4, TOKENS, 1) and torch.all(out == 0.5)


def _blending_model(style: GerminationStyle) -> MorphogeneticModel:
    """A tiny host with a perturbed (no longer identity) attention seed at r0c1, BLENDING halfway to alpha 0.5."""
    model = _host()
    slot = model.slot("r0c1")
    slot.germinate(BlueprintAction.ATTENTION, style, 2, 0.5, torch.Generator().manual_seed(2), 0.0)
    assert slot.seed is not None
    with torch.no_grad():
        for p in slot.seed.parameters():
            p.add_(0.2)
    slot.tick(auto_advance=True)  # → TRAINING
    slot.record_gradients(GradientStats(1.0, True, 0.0, 0.0))
    slot.tick(auto_advance=True)  # → BLENDING and the first of 2 ramp ticks towards 0.5
    assert slot.stage == SeedStage.BLENDING and 0.0 < slot.alpha < 0.5
    return model


@pytest.mark.parametrize("style", list(GerminationStyle), ids=lambda s: s.name)
def test_counterfactual_configurations_match_separate_forwards(style: GerminationStyle) -> None:
    model = _blending_model(style)
    model.eval()
    x = _tokens(batch=6)
    slot = model.slot("r0c1")
    alphas = [0.0, slot.alpha, 1.0]
    with torch.no_grad():
        stacked = model.forward_configs(x, {"r0c1": alphas})  # [K, B, T, vocab]
        assert stacked.shape == (3, 6, TOKENS, VOCAB)
        assert torch.equal(stacked[1], model(x))  # the slot's own alpha
        separate = []
        for alpha in alphas:
            single = copy.deepcopy(model)
            single.slot("r0c1").controller = AlphaController(alpha, alpha, alpha)
            separate.append(single(x))
    for k in range(3):
        torch.testing.assert_close(stacked[k], separate[k], rtol=1e-5, atol=1e-6)
    without = copy.deepcopy(model)
    without.slot("r0c1").seed = None
    with torch.no_grad():
        assert torch.equal(stacked[0], without(x))  # alpha 0 is the seedless host exactly
        assert not torch.equal(stacked[1], stacked[0])


def test_validation_measures_token_accuracy_and_contribution() -> None:
    model = _blending_model(GerminationStyle.LINEAR_ADD)
    x, y = _tokens(batch=7, seed=3), _tokens(batch=7, seed=4)
    result = validate(model, x, y, chunk_size=3)
    without = copy.deepcopy(model)
    without.slot("r0c1").seed = None
    model.eval()
    with torch.no_grad():
        logits, host_logits = model(x), without(x)

    def accuracy(out: torch.Tensor) -> float:
        return 100.0 * float((out.argmax(-1) == y).sum()) / y.numel()

    main, host = accuracy(logits), accuracy(host_logits)
    loss = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()))
    assert result.num_configs == 2  # main and alpha-0 (loo = all_off = committed)
    assert result.accuracy == pytest.approx(main) and result.all_off_accuracy == pytest.approx(host)
    assert result.contributions == {"r0c1": pytest.approx(main - host)}
    assert result.loss == pytest.approx(loss, rel=1e-5)


#: A text environment small enough for unit tests (8-token windows, 32 training windows an epoch).
TINY_TEXT = EnvConfig(
    task="text",
    host="transformer",
    episode_length=8,
    text=TextTask(context_length=8, train_windows=32, val_windows=8, corpus_bytes=3000),
    host_training=HostTraining(batch_size=16),
    lifecycle=LifecycleSettings(training_dwell=2),
)


def test_text_episodes_are_deterministic() -> None:
    def episode() -> list[tuple[float, float]]:
        env = MorphogeneticEnv(TINY_TEXT)
        env.reset(seed=4)
        wait = {head: 0 for head in env.action_space.head_names}
        steps = [env.step({**wait, "op": int(LifecycleOp.GERMINATE), "blueprint": int(BlueprintAction.LORA)})]
        steps += [env.step(wait) for _ in range(3)]
        return [(s.info.train_loss, s.info.val_accuracy) for s in steps]

    assert episode() == episode()


def test_text_episode_reports_perplexity_and_the_governor_rolls_back() -> None:
    env = MorphogeneticEnv(TINY_TEXT)
    env.reset(seed=0)
    wait = {head: 0 for head in env.action_space.head_names}
    germinate = {**wait, "op": int(LifecycleOp.GERMINATE), "slot": 0, "blueprint": int(BlueprintAction.ATTENTION)}
    step = env.step(germinate)
    assert step.info.val_perplexity == pytest.approx(math.exp(step.info.val_loss))
    for _ in range(4):
        step = env.step(wait)  # epoch 5: a snapshot after the clean check
    assert env.model is not None and env.snapshot is not None
    assert env.model.slot("r0c0").stage == SeedStage.BLENDING
    snapshot = {k: v.clone() for k, v in env.snapshot.host.items()}
    with torch.no_grad():
        env.model.host.blocks[1].attn.qkv.weight[0, 0] = math.nan  # type: ignore[union-attr, index]
    result = env.step(wait)
    assert result.terminated and result.info.rollback_reason == "non_finite_loss"
    assert all(torch.equal(v, snapshot[k]) for k, v in env.model.host.state_dict().items())
    assert env.model.slot("r0c0").stage == SeedStage.PRUNED
    assert math.isfinite(result.info.val_perplexity)
