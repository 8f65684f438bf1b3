"""Presets resolve through the config-file path: to valid configs, the default one to the defaults."""

from __future__ import annotations

import json

import pytest

from esper.simic.training import ConfigKeyError, TrainConfig, build_config
from esper.simic.training.presets import DEFAULT_PRESET, PRESETS, Preset, PresetError, get_preset


def test_the_default_preset_is_exactly_the_default_config() -> None:
    assert DEFAULT_PRESET == "digits-varied"
    assert build_config(get_preset(DEFAULT_PRESET).layer()) == TrainConfig()


def test_the_first_run_trains_with_the_benchmark_settings_and_a_ten_minute_budget() -> None:
    """``esper-train ppo`` with no options is the benchmark preset's run (the settings measured to
    learn), at 150 rounds: the earlier 40 rounds at lr 3e-4 with one minibatch learned nothing."""
    defaults = TrainConfig()
    assert build_config(get_preset("benchmark").layer()) == defaults
    assert defaults.total_rounds == 150 and defaults.num_envs == 4
    assert (defaults.ppo.learning_rate, defaults.ppo.num_minibatches, defaults.ppo.per_head_normalisation) == (
        1e-3,
        4,
        True,
    )


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves_to_a_valid_config_with_its_settings(name: str) -> None:
    data_dir = {"env": {"data_dir": "cifar-10-batches-py"}} if name == "cifar10-cnn" else {}
    resolved = build_config(get_preset(name).layer(), data_dir).to_dict()
    for line in get_preset(name).setting_lines():
        path, value = line.split(" = ")
        node = resolved
        for key in path.split("."):
            node = node[key]
        assert json.dumps(node) == value


def test_text_transformer_uses_the_measured_language_model_settings() -> None:
    env = build_config(get_preset("text-transformer").layer()).env
    assert (env.task, env.host, env.host_training.lr, env.text.train_windows) == ("text", "transformer", 0.1, 512)
    assert env.seed_training == TrainConfig().env.seed_training  # only what the preset names changes


def test_a_layer_is_a_copy_the_caller_may_change() -> None:
    layer = get_preset("text-transformer").layer()
    layer["env"]["text"]["train_windows"] = 1
    assert get_preset("text-transformer").layer()["env"]["text"]["train_windows"] == 512


def test_a_preset_with_a_typo_fails_like_a_config_file() -> None:
    with pytest.raises(ConfigKeyError, match=r"env\.hots"):
        build_config(Preset("typo", "a misspelt key", {"env": {"hots": "cnn"}}).layer())


def test_an_unknown_name_lists_the_known_presets() -> None:
    known = r"digits-varied, benchmark, digits-mlp, "
    with pytest.raises(PresetError, match=rf"^unknown preset 'cnn'; known presets: {known}"):
        get_preset("cnn")
