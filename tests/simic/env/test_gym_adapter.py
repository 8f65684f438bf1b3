"""Gymnasium adapter (esper.simic.env.gym_adapter): API conformance, masks, registration."""

from __future__ import annotations

import ast
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import esper.simic
import esper.tamiyo
from esper.simic.env.config import EnvConfig, HostTraining, SyntheticTask
from esper.simic.env.gym_adapter import ENV_ID, EPISODE_KEY, MorphogeneticGymEnv, register_envs
from esper.simic.env.morphogenetic import MorphogeneticEnv
from esper.tamiyo.contract import HEAD_NAMES, LifecycleOp, feature_size

TINY = EnvConfig(
    task="synthetic",
    synthetic=SyntheticTask(train_size=64, val_size=32),
    host_training=HostTraining(batch_size=32),
    episode_length=4,
)


@pytest.fixture()
def env() -> MorphogeneticGymEnv:
    return MorphogeneticGymEnv(TINY)


@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is:UserWarning")
def test_check_env_passes(env: MorphogeneticGymEnv) -> None:
    check_env(env, skip_render_check=True)


def test_spaces(env: MorphogeneticGymEnv) -> None:
    sizes = env.env.action_space.sizes()
    assert env.action_space.nvec.tolist() == [sizes[h] for h in HEAD_NAMES]
    assert env.observation_space.shape == (feature_size(3) + 3,)
    assert env.observation_space.dtype == np.float32


def test_action_masks_are_flat_per_head_concatenation(env: MorphogeneticGymEnv) -> None:
    env.reset(seed=0)
    masks = env.action_masks()
    assert masks.dtype == np.bool_
    assert masks.shape == (int(env.action_space.nvec.sum()),)
    heads = MorphogeneticEnv(TINY).reset(0).masks.heads  # same seed, same state
    offset = 0
    for head in HEAD_NAMES:
        size = heads[head].shape[0]
        assert masks[offset : offset + size].tolist() == heads[head].tolist()
        offset += size


def test_observation_splits_back_into_features_and_blueprints(env: MorphogeneticGymEnv) -> None:
    obs, _ = env.reset(seed=1)
    parts = env.split_observation(obs)
    assert parts.features.shape == (feature_size(3),)
    assert parts.blueprint_indices.tolist() == [-1, -1, -1]  # no seed at episode start


def test_invalid_combination_runs_as_wait(env: MorphogeneticGymEnv) -> None:
    env.reset(seed=2)
    action = np.zeros(len(HEAD_NAMES), dtype=np.int64)
    action[HEAD_NAMES.index("op")] = LifecycleOp.FOSSILIZE  # nothing is HOLDING at the start
    _, reward, terminated, truncated, info = env.step(action)
    assert info["action_valid"] is False
    assert info["executed_op"] == LifecycleOp.WAIT
    assert np.isfinite(reward) and not terminated and not truncated


def test_registered_id_makes_the_env_with_config_overrides() -> None:
    register_envs()
    register_envs()  # idempotent
    made = gymnasium.make(ENV_ID, config=TINY, episode_length=2)
    assert isinstance(made.unwrapped, MorphogeneticGymEnv)
    obs, _ = made.reset(seed=3)
    assert obs in made.observation_space
    wait = np.zeros(len(HEAD_NAMES), dtype=np.int64)
    assert made.step(wait)[3] is False
    _, _, terminated, truncated, info = made.step(wait)
    assert (terminated, truncated) == (True, False)  # the last epoch is a true terminal
    assert info[EPISODE_KEY]["length"] == 2 and "episode" not in info
    made.close()
    limited = gymnasium.make(ENV_ID, config=TINY, episode_length=2, max_episode_steps=1)  # a real time limit
    limited.reset(seed=3)
    assert limited.step(wait)[2:4] == (False, True)
    limited.close()


def test_record_episode_statistics_owns_info_episode_and_esper_keeps_its_summary(env: MorphogeneticGymEnv) -> None:
    """``info["episode"]`` is Gymnasium's (``r``, ``l``, ``t``: what SB3's Monitor and sb3-contrib read);
    Esper's own summary travels intact under its own key, with the same return and length."""
    wrapped = gymnasium.wrappers.RecordEpisodeStatistics(env)
    _, reset_info = wrapped.reset(seed=4)
    wait = np.zeros(len(HEAD_NAMES), dtype=np.int64)
    rewards, infos = [], []
    for _ in range(TINY.episode_length):
        _, reward, _, _, info = wrapped.step(wait)
        rewards.append(reward)
        infos.append(info)
    assert all("episode" not in i and EPISODE_KEY not in i for i in infos[:-1])
    stats, esper = infos[-1]["episode"], infos[-1][EPISODE_KEY]
    assert set(stats) == {"r", "l", "t"} and stats["l"] == TINY.episode_length
    assert stats["r"] == pytest.approx(sum(rewards))  # Gymnasium's undiscounted sum
    gamma = env.env.gamma
    assert esper["discounted_return"] == pytest.approx(sum(gamma**t * r for t, r in enumerate(rewards)))
    horizon = gamma ** (TINY.episode_length - 1)
    assert esper["discounted_return"] == pytest.approx(horizon * esper["objective"] - reset_info["val_accuracy"])
    assert esper["length"] == TINY.episode_length and esper["final_accuracy"] == infos[-1]["val_accuracy"]
    assert esper["fossilized_slots"] == () and esper["rollbacks"] == 0


def test_step_info_is_a_plain_dict_of_the_step_fields(env: MorphogeneticGymEnv) -> None:
    _, reset_info = env.reset(seed=5)
    assert set(reset_info) == {"val_accuracy", "val_loss", "host_params"}
    _, reward, _, _, info = env.step(np.zeros(len(HEAD_NAMES), dtype=np.int64))
    assert info["epoch"] == 1 and info["rollback_reason"] is None and info["governor_rollback"] is False
    assert isinstance(info["reward_components"], dict) and sum(info["reward_components"].values()) == pytest.approx(
        reward
    )


def test_no_other_module_imports_gymnasium_at_import_time() -> None:
    """gymnasium is optional: only the adapter may import it (or the adapter) at module level."""
    offenders = []
    for package in (esper.simic, esper.tamiyo):
        for path in Path(package.__path__[0]).rglob("*.py"):
            if path.name == "gym_adapter.py":
                continue
            for node in ast.parse(path.read_text()).body:
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)]
                if any(n.split(".")[0] == "gymnasium" or n.endswith("gym_adapter") for n in names):
                    offenders.append(f"{path}:{node.lineno}")
    assert offenders == []


def test_the_discount_defaults_to_ppos_and_can_be_given() -> None:
    register_envs()
    made = gymnasium.make(ENV_ID, config=TINY, gamma=0.5)
    assert made.unwrapped.env.gamma == 0.5  # type: ignore[attr-defined]
    assert MorphogeneticGymEnv(TINY).env.gamma == 0.99
