"""``TrainConfig``: validation, derived values, files and layering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esper.simic.agent import PPOConfig
from esper.simic.env import EnvConfig
from esper.simic.training import (
    DEFAULT_ROUNDS,
    ConfigFileError,
    ConfigKeyError,
    TrainConfig,
    build_config,
    load_config_file,
    merge_layers,
)
from esper.simic.training.dataclass_io import field_docs


def test_defaults_and_derived_rounds() -> None:
    config = TrainConfig()
    assert (config.policy, config.num_envs, config.seed, config.device) == ("lstm", 4, 42, "cpu")
    assert config.total_rounds == DEFAULT_ROUNDS
    assert TrainConfig(episodes=10, num_envs=4).total_rounds == 3
    assert TrainConfig(episodes=10, num_envs=4).total_episodes == 12
    assert TrainConfig(rounds=5, num_envs=2).total_episodes == 10


def test_every_field_is_documented() -> None:
    assert all(field_docs(TrainConfig).values())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_envs": 0}, "num_envs must be >= 1"),
        ({"rounds": 2, "episodes": 8}, "not both"),
        ({"rounds": 0}, "rounds must be >= 1"),
        ({"episodes": -1}, "episodes must be >= 1"),
        ({"checkpoint_every": -1}, "checkpoint_every"),
        ({"compile_mode": "fast"}, "compile_mode 'fast'"),
        ({"device": "gpu0"}, "invalid device 'gpu0'"),
        ({"device": "meta"}, "device 'meta' cannot run Esper"),
        ({"num_envs": 4097}, "num_envs must be <= 4096, got 4097"),
        ({"num_envs": 99999999999999999999}, "num_envs must be <= 4096, got 99999999999999999999"),
        ({"num_threads": 1025}, "num_threads must be <= 1024 or None, got 1025"),
        ({"policy": ""}, "policy must be"),
        ({"policy_kwargs": {"x": object()}}, "JSON-serialisable"),
    ],
)
def test_validation_names_the_offending_value(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)  # type: ignore[arg-type]


def test_dict_round_trip_and_unknown_keys() -> None:
    config = TrainConfig(
        policy="mlp", episodes=9, env=EnvConfig(task="synthetic", slot_ids=("r0c1",)), ppo=PPOConfig(learning_rate=1e-3)
    )
    data = config.to_dict()
    assert data["env"]["slot_ids"] == ["r0c1"]
    json.dumps(data)
    assert TrainConfig.from_dict(data) == config
    with pytest.raises(ConfigKeyError, match=r"unknown config key\(s\) \['ppo.lr'\]"):
        TrainConfig.from_dict({"ppo": {"lr": 1.0}})
    with pytest.raises(ConfigKeyError, match="'num_envs' expects an integer"):
        TrainConfig.from_dict({"num_envs": "four"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"env": {"governor": {"patiense": 3}}},
            r"unknown config key\(s\) \['env.governor.patiense'\]; valid keys in 'env.governor'",
        ),
        ({"env": {"reward": {"rent": 0.1}}}, r"\['env.reward.rent'\]"),
        ({"env": {"gamma": 0.9}}, r"\['env.gamma'\]"),
        ({"env": {"governor": 3}}, r"config section 'env.governor' must be a table"),
        ({"env": {"host_training": {"lr": "fast"}}}, r"'env.host_training.lr' expects a number"),
    ],
)
def test_nested_sections_reject_bad_keys_by_their_dotted_path(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigKeyError, match=message):
        TrainConfig.from_dict(data)


def test_toml_and_json_files(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        'policy = "mlp"\nrounds = 3\n[env]\ntask = "synthetic"\nepisode_length = 6\n[ppo]\nlearning_rate = 0.001\n'
    )
    config = build_config(load_config_file(toml))
    assert (config.policy, config.total_rounds, config.env.episode_length, config.ppo.learning_rate) == (
        "mlp",
        3,
        6,
        0.001,
    )
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps(config.to_dict()))
    assert build_config(load_config_file(as_json)) == config


def test_nested_tables_set_sections_and_every_reward_weight(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        '[env]\ntask = "synthetic"\n'
        "[env.lifecycle]\ntraining_dwell = 2\n"
        "[env.host_training]\nlr = 0.05\n"
        "[env.governor]\npatience = 3\n"
        "[env.reward]\ngovernor_penalty = 4.0\n"
        "[env.objective]\nparam_price = 0.25\ncompute_price = 0.5\n"
        "[ppo]\ngamma = 0.9\n"
    )
    config = build_config(load_config_file(toml), {"env": {"objective": {"compute_price": 0.05}}})
    env = config.env
    assert (env.lifecycle.training_dwell, env.host_training.lr, env.governor.patience) == (2, 0.05, 3)
    assert (env.reward.governor_penalty, env.objective.param_price, env.objective.compute_price) == (4.0, 0.25, 0.05)
    assert env.governor.window == 10 and config.ppo.gamma == 0.9  # untouched fields keep their defaults
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.toml", "x = [", "not valid TOML"),
        ("a.json", "{", "not valid JSON"),
        ("a.yaml", "", "must end in .toml or .json"),
        ("a.json", "[1]", "table/object at the top level"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigFileError, match=message):
        load_config_file(path)
    with pytest.raises(ConfigFileError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")


def test_later_layers_win_and_episodes_replaces_rounds() -> None:
    merged = merge_layers(
        {"rounds": 5, "env": {"task": "synthetic", "episode_length": 4}}, {"episodes": 8, "env": {"episode_length": 6}}
    )
    assert merged == {"episodes": 8, "env": {"task": "synthetic", "episode_length": 6}}
    assert build_config({"episodes": 8}, {"rounds": 2}).total_rounds == 2
