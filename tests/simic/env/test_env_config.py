"""EnvConfig and its settings sections: validation, derived values, the shared float check."""

from __future__ import annotations

import dataclasses

import pytest
from scripted_actions import WAIT

from esper.simic.agent import PPOConfig
from esper.simic.checks import FLOAT32_MAX, check_float
from esper.simic.env import (
    DEFAULT_GAMMA,
    EnvConfig,
    EnvStep,
    GovernorSettings,
    HostTraining,
    LifecycleSettings,
    MorphogeneticEnv,
    ObjectiveConfig,
    SeedTraining,
    SyntheticTask,
    VectorEnv,
)
from esper.simic.env.config import (
    MAX_BATCH_SIZE,
    MAX_CONTEXT_LENGTH,
    MAX_CORPUS_BYTES,
    MAX_CROP_PADDING,
    MAX_EPISODE_LENGTH,
    MAX_SYNTHETIC_SAMPLES,
    CifarTask,
    TextTask,
)
from esper.simic.training.dataclass_io import field_docs
from esper.tamiyo.contract import BlueprintAction, LifecycleOp


def test_defaults_and_derived_values() -> None:
    config = EnvConfig()
    assert (config.task, config.host, config.impaired, config.episode_length) == ("digits-varied", "mlp", True, 40)
    lifecycle = config.lifecycle
    assert (lifecycle.training_dwell, lifecycle.min_prune_age, lifecycle.embargo_epochs, lifecycle.max_seeds) == (
        4,
        3,
        3,
        0,
    )
    assert (config.host_training.lr, config.seed_training.lr, config.governor.patience) == (0.02, 0.02, 2)
    assert config.topology == "mlp" and config.slot_config.num_slots == 3
    assert EnvConfig(task="digits", host="cnn", slot_ids=["r0c2"]).slot_ids == ("r0c2",)  # type: ignore[arg-type]


def test_the_varied_task_trains_on_digits_and_the_fixed_ones_do_not_vary() -> None:
    varied = EnvConfig(task="digits-varied")
    assert (varied.varies_per_episode, varied.dataset) == (True, "digits")
    for task in ("digits", "synthetic"):
        assert (EnvConfig(task=task).varies_per_episode, EnvConfig(task=task).dataset) == (False, task)  # type: ignore[arg-type]


def test_no_gamma_in_the_environment_config() -> None:
    """One discount: PPO's gamma shapes the reward; the env default (no trainer) is PPO's default."""
    assert "gamma" not in {f.name for f in dataclasses.fields(EnvConfig)}
    assert "gamma" not in {f.name for f in dataclasses.fields(EnvConfig().reward)}
    assert PPOConfig().gamma == DEFAULT_GAMMA


def test_every_section_field_is_documented() -> None:
    for section in (EnvConfig, LifecycleSettings, HostTraining, SeedTraining, GovernorSettings, SyntheticTask):
        docs = field_docs(section)
        assert all(docs.values()), [name for name, doc in docs.items() if not doc]
    assert all(field_docs(type(EnvConfig().reward)).values())


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"task": "mnist"}, "unknown task 'mnist'"),
        ({"host": "rnn"}, "unknown host 'rnn'"),
        ({"task": "digits", "host": "transformer"}, "task 'digits' cannot run on host 'transformer'"),
        ({"task": "text"}, "the text task needs the transformer host"),
        ({"reward_mode": "escrow"}, "escrow"),
        ({"slot_ids": ("r0c16",)}, r"'r0c16' does not exist: the hosts have slots r0c0\.\.r1c15"),
        ({"slot_ids": ("r2c0",)}, "'r2c0' does not exist"),
        ({"slot_ids": ("r0c0", "r0c0")}, "duplicate"),
        ({"slot_ids": ()}, "at least one"),
        ({"episode_length": 0}, "episode_length"),
        ({"task": "cifar10"}, "data_dir"),
        ({"task": "digits-varied", "host": "cnn"}, r"'digits-varied' draws an impaired mlp host .* host='cnn'"),
        ({"task": "digits-varied", "impaired": False}, r"needs host='mlp' and impaired=True, got .*impaired=False"),
    ],
)
def test_invalid_values_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnvConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: HostTraining(lr=0.0), r"host_training\.lr must be > 0"),
        (lambda: HostTraining(lr=1e39), r"host_training\.lr must be within float32's range"),
        (lambda: HostTraining(batch_size=0), r"host_training\.batch_size"),
        (lambda: HostTraining(max_grad_norm=float("nan")), r"host_training\.max_grad_norm must be a finite number"),
        (lambda: SeedTraining(momentum=1.0), r"seed_training\.momentum must be in \[0, 0.999\]"),
        (lambda: SeedTraining(lr=float("inf")), r"seed_training\.lr"),
        (lambda: GovernorSettings(min_samples=12), r"governor\.min_samples \(12\) must be <= governor\.window"),
        (lambda: GovernorSettings(factor=0.5), r"governor\.factor"),
        (lambda: GovernorSettings(min_loss=-1e39), r"governor\.min_loss"),
        (lambda: LifecycleSettings(training_dwell=-1), r"lifecycle\.training_dwell must be >= 0"),
        (lambda: SyntheticTask(train_size=0), r"synthetic\.train_size"),
    ],
)
def test_sections_validate_and_name_the_field_by_its_path(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("build", "name", "maximum"),
    [
        (lambda n: EnvConfig(episode_length=n), "episode_length", MAX_EPISODE_LENGTH),
        (lambda n: HostTraining(batch_size=n), "host_training.batch_size", MAX_BATCH_SIZE),
        (lambda n: HostTraining(val_batch_size=n), "host_training.val_batch_size", MAX_BATCH_SIZE),
        (lambda n: SyntheticTask(train_size=n), "synthetic.train_size", MAX_SYNTHETIC_SAMPLES),
        (lambda n: SyntheticTask(val_size=n), "synthetic.val_size", MAX_SYNTHETIC_SAMPLES),
        (lambda n: TextTask(context_length=n), "text.context_length", MAX_CONTEXT_LENGTH),
        (lambda n: TextTask(corpus_bytes=n), "text.corpus_bytes", MAX_CORPUS_BYTES),
        (lambda n: CifarTask(crop_padding=n), "cifar10.crop_padding", MAX_CROP_PADDING),
    ],
)
def test_sizes_have_a_documented_maximum(build, name: str, maximum: int) -> None:  # type: ignore[no-untyped-def]
    """Sizes that allocate memory are bounded at validation, so a typo fails in one line, not in an OOM kill."""
    build(maximum)
    for value in (maximum + 1, 99999999999999999999):
        with pytest.raises(ValueError, match=rf"^{name} must be <= {maximum}, got {value}$"):
            build(value)


@pytest.mark.parametrize(
    "build",
    [
        lambda: EnvConfig(episode_length=4.0),  # type: ignore[arg-type]
        lambda: EnvConfig(impaired=1),  # type: ignore[arg-type]
        lambda: EnvConfig(data_dir=3),  # type: ignore[arg-type]
        lambda: LifecycleSettings(auto_advance=1),  # type: ignore[arg-type]
        lambda: HostTraining(val_batch_size=True),  # type: ignore[arg-type]
    ],
)
def test_wrong_types_are_rejected(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):
        build()


def test_float_check_bounds_every_value_by_float32() -> None:
    check_float("x", FLOAT32_MAX)
    check_float("x", -FLOAT32_MAX, low=-float("inf"))
    with pytest.raises(ValueError, match=r"x must be within float32's range \(\|x\| <= 3\.403e\+38\), got 1e\+39"):
        check_float("x", 1e39, high=float("inf"))
    with pytest.raises(ValueError, match="x must be within float32's range"):
        check_float("x", -1e39, low=-float("inf"))
    with pytest.raises(ValueError, match="x must be a finite number, got True"):
        check_float("x", True)


def test_vector_env_rejects_a_discount_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match="gamma"):
        VectorEnv(EnvConfig(task="synthetic", synthetic=SyntheticTask(train_size=8, val_size=4)), 1, gamma=1.5)


GERMINATE = {**WAIT, "op": int(LifecycleOp.GERMINATE), "blueprint": int(BlueprintAction.MLP)}
TINY = EnvConfig(
    task="synthetic",
    episode_length=3,
    synthetic=SyntheticTask(train_size=32, val_size=16),
    host_training=HostTraining(batch_size=32),
)


def _germinate_step(config: EnvConfig, gamma: float = DEFAULT_GAMMA) -> EnvStep:
    env = MorphogeneticEnv(config, gamma=gamma)
    env.reset(seed=1)
    return env.step(GERMINATE)


def test_objective_prices_and_the_discount_reach_the_reward() -> None:
    """Same episode, one knob changed: the reward moves by exactly that term's change (r = γ·o_1 − o_0)."""
    baseline = _germinate_step(TINY)
    parts = baseline.info.reward_components
    assert parts.param_cost < 0.0 and parts.compute_cost < 0.0  # the germinated seed costs parameters and compute
    pricier = dataclasses.replace(TINY, objective=ObjectiveConfig(param_price=1.5, compute_price=0.06))
    costly = _germinate_step(pricier).info.reward_components
    assert costly.param_cost == pytest.approx(3.0 * parts.param_cost)  # 1.5 / 0.5: o_0 has no seeds
    assert costly.compute_cost == pytest.approx(3.0 * parts.compute_cost)  # 0.06 / 0.02: o_0 has no compute
    assert costly.accuracy == parts.accuracy
    # r = γ·o_1 − o_0, so changing γ moves the reward by Δγ·o_1
    o_1 = (baseline.reward + _reset_accuracy(TINY)) / DEFAULT_GAMMA  # o_0 is the untrained host's accuracy
    assert _germinate_step(TINY, gamma=0.5).reward - baseline.reward == pytest.approx((0.5 - DEFAULT_GAMMA) * o_1)


def _reset_accuracy(config: EnvConfig) -> float:
    return MorphogeneticEnv(config).reset(seed=1).info.val_accuracy
