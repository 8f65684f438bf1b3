"""PPOConfig: defaults, validation with the offending value, per-head coefficients; no policy options."""

from __future__ import annotations

import pytest

from esper.simic.agent import DEFAULT_ENTROPY_HEAD_MULTIPLIERS, PPOConfig
from esper.simic.training import ConfigKeyError, TrainConfig
from esper.tamiyo.contract import morphogenetic_action_space


def test_defaults() -> None:
    config = PPOConfig()
    assert (config.learning_rate, config.gamma, config.clip_coef, config.target_kl) == (1e-3, 0.99, 0.2, 0.015)
    assert config.adam_eps == 1e-5 and config.entropy_coef == 0.05 and config.value_coef == 0.5
    assert config.kl_stop_threshold == pytest.approx(0.0225)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rate", 0.0),
        ("gamma", 1.5),
        ("gae_lambda", -0.1),
        ("clip_coef", 1.0),
        ("update_epochs", 0),
        ("num_minibatches", 0),
        ("update_epochs", 2.0),
        ("target_kl", 0.0),
        ("entropy_coef", -1.0),
        ("value_coef", -0.5),
        ("max_grad_norm", 0.0),
        ("advantage_std_floor", 0.0),
        ("value_norm_warmup", 0),
        ("entropy_coef_per_head", {"op": -1.0}),
        ("entropy_coef_end", -0.01),
        ("entropy_anneal_updates", -1),
    ],
)
def test_invalid_values_raise_with_the_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{field: value})


def test_entropy_coefs_per_head() -> None:
    space = morphogenetic_action_space()
    coefs = PPOConfig(entropy_coef=0.1).entropy_coefs(space)
    assert coefs == {h: 0.1 * DEFAULT_ENTROPY_HEAD_MULTIPLIERS[h] for h in space.head_names}
    custom = PPOConfig(entropy_coef=0.1, entropy_coef_per_head={"op": 2.0}).entropy_coefs(space)
    assert custom["op"] == pytest.approx(0.2) and custom["blueprint"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown heads"):
        PPOConfig(entropy_coef_per_head={"opp": 1.0}).entropy_coefs(space)


def test_entropy_anneal_is_linear_then_constant() -> None:
    config = PPOConfig(entropy_coef=0.05, entropy_coef_end=0.01, entropy_anneal_updates=4)
    assert [config.entropy_coef_at(u) for u in range(7)] == pytest.approx([0.05, 0.04, 0.03, 0.02, 0.01, 0.01, 0.01])
    space = morphogenetic_action_space()
    blueprint = DEFAULT_ENTROPY_HEAD_MULTIPLIERS["blueprint"]
    assert config.entropy_coefs(space, 2)["blueprint"] == pytest.approx(0.03 * blueprint)
    assert PPOConfig(entropy_coef=0.05).entropy_coef_at(1000) == 0.05  # no anneal: constant


@pytest.mark.parametrize("settings", [{"entropy_coef_end": 0.01}, {"entropy_anneal_updates": 10}])
def test_an_entropy_anneal_needs_both_its_settings(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="an entropy anneal needs both entropy_coef_end and entropy_anneal_updates"):
        PPOConfig(**settings)


def test_mappings_are_copied() -> None:
    multipliers = {"op": 2.0}
    config = PPOConfig(entropy_coef_per_head=multipliers)
    multipliers["op"] = 5.0
    assert config.entropy_coef_per_head == {"op": 2.0}


def test_probability_floors_are_a_policy_option_not_a_ppo_one() -> None:
    """PPO reads no constructor option of the policy; floors travel in ``policy_kwargs``."""
    assert "probability_floor" not in PPOConfig.__dataclass_fields__ and not hasattr(PPOConfig, "policy_kwargs")
    unknown = r"^unknown config key\(s\) \['ppo.probability_floor'\]; valid keys in 'ppo'"
    with pytest.raises(ConfigKeyError, match=unknown):
        TrainConfig.from_dict({"ppo": {"probability_floor": {"op": 0.15}}})
    config = TrainConfig.from_dict({"policy_kwargs": {"probability_floor": {"op": 0.15}}})
    assert config.policy_kwargs == {"probability_floor": {"op": 0.15}}
