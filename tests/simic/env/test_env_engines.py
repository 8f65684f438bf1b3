"""Host engines: the batched engine trains each environment's epoch as the loop engine does, to float rounding."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from esper.simic.env import EnvConfig, MorphogeneticEnv, MorphogeneticModel, VectorEnv, load_task
from esper.simic.env.config import HostTraining, TextTask
from esper.simic.env.datasets import write_cifar10_batches
from esper.simic.env.engines import BatchedEngine, HostEngine, LoopEngine, make_engine
from esper.simic.env.host_epoch import EpochStats
from esper.simic.env.slot import GradientStats
from esper.simic.env.stacked_validation import validate_stacked
from esper.simic.env.validation import ValidationResult, validate
from esper.tamiyo.contract import ActionMasks, BlueprintAction, GerminationStyle, LifecycleOp, SeedStage

DIGITS = EnvConfig(task="digits", episode_length=10)
CONFIGS = {
    "mlp": EnvConfig(task="digits", impaired=False, episode_length=10),
    "cnn": EnvConfig(task="digits", host="cnn", episode_length=8),
    "transformer": EnvConfig(
        task="text",
        host="transformer",
        episode_length=6,
        text=TextTask(train_windows=64, val_windows=16),
        host_training=HostTraining(batch_size=16),
    ),
}


class _Recording:
    """Wraps an engine and keeps the epoch statistics and validations it returned on its last calls."""

    def __init__(self, inner: HostEngine) -> None:
        self.inner = inner
        self.name = inner.name
        self.last: list[EpochStats] = []
        self.validations: list[ValidationResult] = []

    def train(self, envs: Any) -> list[EpochStats]:
        self.last = self.inner.train(envs)
        return self.last

    def validate(self, envs: Any) -> list[ValidationResult]:
        self.validations = self.inner.validate(envs)
        return self.validations


def _pick(mask: torch.Tensor, generator: torch.Generator) -> int:
    allowed = mask.nonzero().flatten()
    return int(allowed[torch.randint(len(allowed), (1,), generator=generator)])


def _actions(venv: VectorEnv, masks: ActionMasks, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random allowed actions that germinate often, so the environments' seeds differ in slot, blueprint and stage."""
    heads = venv.action_space.head_names
    actions = {head: torch.zeros(venv.num_envs, dtype=torch.int64) for head in heads}
    for row in range(venv.num_envs):
        for head in heads:
            if head != "slot":
                actions[head][row] = _pick(masks[head][row], generator)
        if masks["op"][row, LifecycleOp.GERMINATE] and torch.rand((), generator=generator) < 0.5:
            actions["op"][row] = int(LifecycleOp.GERMINATE)
        slots = masks.slot_by_op[row, actions["op"][row]] if masks.slot_by_op is not None else None
        actions["slot"][row] = _pick(slots, generator) if slots is not None and slots.any() else 0
    return actions


@pytest.mark.parametrize("host", ["mlp", "cnn", "transformer"])
def test_batched_epochs_match_the_loop_per_minibatch(host: str) -> None:
    """From the same state, every step of an episode: each environment's minibatch losses agree to 1e-5."""
    config = CONFIGS[host]
    venv = VectorEnv(config, 4, engine="loop")
    generator = torch.Generator().manual_seed(0)
    masks = venv.reset([0, 1, 2, 3]).masks
    grouped_seeds = 0
    for _ in range(config.episode_length):
        actions = _actions(venv, masks, generator)
        twin = copy.deepcopy(venv)
        loop, batched = _Recording(LoopEngine()), _Recording(BatchedEngine())
        venv.engine, twin.engine = loop, batched
        result = venv.step(actions)
        twin_result = twin.step(actions)
        for alone, together in zip(loop.last, batched.last, strict=True):
            torch.testing.assert_close(
                torch.tensor(together.batch_losses), torch.tensor(alone.batch_losses), rtol=1e-5, atol=1e-5
            )
            assert together.seed_gradients.keys() == alone.seed_gradients.keys()
            for slot_id, stats in alone.seed_gradients.items():
                assert together.seed_gradients[slot_id].finite == stats.finite
                assert together.seed_gradients[slot_id].norm == pytest.approx(stats.norm, rel=1e-4, abs=1e-6)
        for alone, together in zip(loop.validations, batched.validations, strict=True):
            assert together.num_configs == alone.num_configs
            assert together.loss == pytest.approx(alone.loss, rel=1e-5, abs=1e-5)
            for name in ("accuracy", "all_off_accuracy", "committed_accuracy"):  # one sample in 256 may flip
                assert getattr(together, name) == pytest.approx(getattr(alone, name), abs=0.5)
            assert together.contributions == pytest.approx(alone.contributions, abs=1.0)
        for a, b in zip(result.infos, twin_result.infos, strict=True):
            assert a is not None and b is not None
            assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5, abs=1e-5)
        blueprints = [tuple(s.blueprint for s in info.slots) for info in result.infos if info is not None]
        grouped_seeds = max(grouped_seeds, len(blueprints) - len(set(blueprints)))
        masks = result.masks
    assert grouped_seeds > 0  # some step trained two environments' identical seed layouts stacked


def test_augmented_cifar_epochs_match_the_loop(tmp_path: Path) -> None:
    """Every environment augments its minibatches from its own generator in the batched engine too."""
    root = write_cifar10_batches(tmp_path / "cifar", per_batch=40, num_val=20, seed=0)
    config = EnvConfig(
        task="cifar10",
        host="cnn",
        data_dir=str(root),
        episode_length=3,
        host_training=HostTraining(batch_size=50),
    )
    venv = VectorEnv(config, 3, engine="loop")
    generator = torch.Generator().manual_seed(0)
    masks = venv.reset([0, 1, 2]).masks
    for _ in range(config.episode_length):
        actions = _actions(venv, masks, generator)
        twin = copy.deepcopy(venv)
        loop, batched = _Recording(LoopEngine()), _Recording(BatchedEngine())
        venv.engine, twin.engine = loop, batched
        masks = venv.step(actions).masks
        twin.step(actions)
        for alone, together in zip(loop.last, batched.last, strict=True):
            assert alone.num_batches == 4
            torch.testing.assert_close(
                torch.tensor(together.batch_losses), torch.tensor(alone.batch_losses), rtol=1e-5, atol=1e-5
            )


def _grown(host: str) -> list[MorphogeneticModel]:
    """Four trained-looking models of one host shape whose seeds differ in slot, blueprint, blend and stage."""
    venv = VectorEnv(EnvConfig(task="digits", host=host, impaired=False), 4, engine="loop")
    venv.reset([0, 1, 2, 3])
    models = [env.model for env in venv.envs if env.model is not None]
    generator = torch.Generator().manual_seed(0)
    first, second = (
        (BlueprintAction.MLP, BlueprintAction.NORM)
        if host == "mlp"
        else (
            BlueprintAction.CONV_LIGHT,
            BlueprintAction.NORM,
        )
    )
    plan = [  # (env, slot, blueprint, style, ticks, fossilize)
        (0, "r0c0", first, GerminationStyle.LINEAR_ADD, 8, True),
        (0, "r0c1", second, GerminationStyle.LINEAR_ADD, 7, False),
        (0, "r0c2", first, GerminationStyle.LINEAR_ADD, 8, False),
        (1, "r0c0", first, GerminationStyle.LINEAR_ADD, 5, False),
        (2, "r0c0", first, GerminationStyle.LINEAR_ADD, 8, True),
        (2, "r0c2", second, GerminationStyle.GATED_GATE, 7, False),
        (3, "r0c2", second, GerminationStyle.LINEAR_ADD, 1, False),
    ]
    for env, slot_id, blueprint, style, ticks, fossilize in plan:
        slot = models[env].slot(slot_id)
        slot.germinate(blueprint, style, 3, 1.0, generator, accuracy=50.0)
        for _ in range(ticks):
            slot.record_gradients(GradientStats(norm=1.0, finite=True, vanishing_fraction=0.0, exploding_fraction=0.0))
            slot.tick(auto_advance=True)
        if fossilize:
            slot.record_contribution(1.0)
            assert slot.fossilize()
    with torch.no_grad():
        for model in models:
            for p in model.parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=generator))
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.normal_(0.0, 0.1, generator=generator)
    return models


@pytest.mark.parametrize("host", ["mlp", "cnn"])
def test_stacked_validation_matches_each_model(host: str) -> None:
    """Fossils, blends at several alphas, a gate, a TRAINING seed: every counterfactual of every model."""
    models = _grown(host)
    stages = {m.slot(sid).stage for m in models for sid in m.slots}
    assert {SeedStage.FOSSILIZED, SeedStage.BLENDING, SeedStage.TRAINING} <= stages
    data = load_task(EnvConfig(task="digits"))
    alone = [validate(m, data.val_x, data.val_y, chunk_size=100) for m in models]
    together = validate_stacked(models, data.val_x, data.val_y, chunk_size=100)
    assert [v.num_configs for v in alone] == [v.num_configs for v in together] and max(
        v.num_configs for v in alone
    ) >= 4
    for a, b in zip(alone, together, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-5, abs=1e-6)
        assert b.contributions.keys() == a.contributions.keys()
        for name in ("accuracy", "all_off_accuracy", "committed_accuracy"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), abs=0.5)
        assert b.contributions == pytest.approx(a.contributions, abs=1.0)


def test_digits_varied_groups_hosts_by_shape() -> None:
    """Reset seeds 12, 13 and 28 draw the same host shape, 0 another one: both engines agree on every step."""
    config = EnvConfig(episode_length=3)
    venv = VectorEnv(config, 4, engine="loop")
    seeds = [12, 0, 13, 28]
    venv.reset(seeds)
    keys = [env.host_key for env in venv.envs]
    assert keys[0] == keys[2] == keys[3] != keys[1]
    loop = VectorEnv(config, 4, engine="loop")
    batched = VectorEnv(config, 4, engine="batched")
    for a, b in zip(_play(loop, seeds), _play(batched, seeds), strict=True):
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5, abs=1e-5)


def _play(venv: VectorEnv, seeds: list[int], steps: int | None = None) -> list[Any]:
    """Infos of an episode of random allowed actions (generator seed 0)."""
    generator = torch.Generator().manual_seed(0)
    masks = venv.reset(seeds).masks
    infos = []
    for _ in range(steps or venv.config.episode_length):
        result = venv.step(_actions(venv, masks, generator))
        infos += [info for info in result.infos if info is not None]
        masks = result.masks
    return infos


def test_the_batched_engine_is_deterministic() -> None:
    first = _play(VectorEnv(DIGITS, 4, engine="batched"), [5, 6, 7, 8], steps=6)
    second = _play(VectorEnv(DIGITS, 4, engine="batched"), [5, 6, 7, 8], steps=6)
    assert first == second


def test_a_governor_rollback_inside_the_batched_engine_stays_in_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NaN host weight in env 1 at its 3rd epoch: env 1 rolls back and ends; envs 0 and 2 train as without it."""
    clean = _play(VectorEnv(DIGITS, 3, engine="batched"), [0, 1, 2], steps=4)
    real_begin_step = MorphogeneticEnv.begin_step
    calls = 0

    def begin_step(env: MorphogeneticEnv, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        real_begin_step(env, *args, **kwargs)
        if calls == 7:  # env 1 (of 3), epoch 3
            assert env.model is not None
            with torch.no_grad():
                next(env.model.host.parameters()).view(-1)[0] = math.nan
        calls += 1

    monkeypatch.setattr(MorphogeneticEnv, "begin_step", begin_step)
    venv = VectorEnv(DIGITS, 3, engine="batched")
    poisoned = _play(venv, [0, 1, 2], steps=4)
    rolled = [info for info in poisoned if info.governor_rollback]
    assert len(rolled) == 1 and rolled[0].epoch == 3 and rolled[0].rollback_reason == "non_finite_loss"
    assert venv.envs[1].done and venv.envs[1].host_sgd is not None and venv.envs[1].host_sgd.momentum is None
    assert venv.envs[1].model is not None
    assert all(bool(torch.isfinite(p).all()) for p in venv.envs[1].model.host.parameters())  # restored snapshot
    unaffected = [i for i in poisoned if not i.governor_rollback]
    # Clean run infos in order: per step env 0, 1, 2; the poisoned run drops env 1 after its rollback.
    expected = [info for index, info in enumerate(clean) if index % 3 != 1 or index < 6]
    for got, want in zip([i for i in poisoned if i is not rolled[0]], expected, strict=True):
        assert got.val_loss == pytest.approx(want.val_loss, rel=1e-5, abs=1e-5)
    assert len(unaffected) == len(poisoned) - 1


def test_engines_are_chosen_by_name() -> None:
    assert make_engine("loop", 8).name == "loop"
    assert make_engine("batched", 1).name == "batched"
    assert make_engine("auto", 1).name == "loop" and make_engine("auto", 4).name == "batched"
    assert make_engine("auto", 4, "cnn").name == "batched" and make_engine("auto", 4, "transformer").name == "loop"
    with pytest.raises(ValueError, match="unknown host engine 'fast'"):
        make_engine("fast", 2)
    with pytest.raises(ValueError, match="unknown host engine"):
        VectorEnv(DIGITS, 2, engine="vectorised")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_batched_engine_runs_on_cuda_and_matches_the_loop() -> None:
    loop = _play(VectorEnv(DIGITS, 4, "cuda", engine="loop"), [0, 1, 2, 3], steps=4)
    batched = _play(VectorEnv(DIGITS, 4, "cuda", engine="batched"), [0, 1, 2, 3], steps=4)
    for a, b in zip(loop, batched, strict=True):
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-4, abs=1e-4)
