"""MorphogeneticEnv: step contract, invalid actions, determinism, observations by name, episode end."""

from __future__ import annotations

import math
import random

import pytest
import torch
from scripted_actions import WAIT

from esper.simic.env import (
    EnvConfig,
    EpisodeOverError,
    HostTraining,
    LifecycleSettings,
    MorphogeneticEnv,
    SyntheticTask,
)
from esper.tamiyo.contract import ActionMasks, BlueprintAction, LifecycleOp, SeedStage, feature_size

SMALL = EnvConfig(
    task="synthetic",
    synthetic=SyntheticTask(train_size=64, val_size=32),
    host_training=HostTraining(batch_size=32),
    episode_length=12,
    lifecycle=LifecycleSettings(training_dwell=2),
)


def random_valid_action(masks: ActionMasks, rng: random.Random) -> dict[str, int]:
    """A uniformly drawn op among the valid ones, with valid indices for every head."""
    action = {}
    ops = [i for i, ok in enumerate(masks.heads["op"].tolist()) if ok]
    op = rng.choice(ops)
    for head, mask in masks.heads.items():
        action[head] = rng.choice([i for i, ok in enumerate(mask.tolist()) if ok])
    assert masks.slot_by_op is not None
    action["slot"] = rng.choice([i for i, ok in enumerate(masks.slot_by_op[op].tolist()) if ok])
    action["op"] = op
    return action


@pytest.fixture(scope="module")
def env() -> MorphogeneticEnv:
    return MorphogeneticEnv(SMALL)


def test_reset_and_step_contract(env: MorphogeneticEnv) -> None:
    reset = env.reset(seed=0)
    assert reset.obs.features.shape == (feature_size(3),) and reset.obs.features.dtype == torch.float32
    assert reset.obs.blueprint_indices.tolist() == [-1, -1, -1]
    assert env.feature_dim == feature_size(3) and env.layout.size == env.feature_dim
    assert reset.masks.slot_by_op is not None and reset.masks.slot_by_op.shape == (6, 3)
    assert env.layout.read(reset.obs.features, "epoch_progress").item() == 0.0
    step = env.step(WAIT)
    info = step.info
    assert info.executed_op == LifecycleOp.WAIT and info.action_valid is True and info.epoch == 1
    assert not info.governor_rollback and info.rollback_reason is None and step.episode is None
    assert step.reward == info.reward_components.total
    assert env.layout.read(step.obs.features, "epoch_progress").item() == pytest.approx(1 / 12)
    assert env.layout.read(step.obs.features, "val_accuracy").item() == pytest.approx(info.val_accuracy / 100)


def test_invalid_action_runs_as_wait(env: MorphogeneticEnv) -> None:
    env.reset(seed=1)
    fossilize = {**WAIT, "op": int(LifecycleOp.FOSSILIZE)}  # nothing to fossilize
    step = env.step(fossilize)
    assert step.info.executed_op == LifecycleOp.WAIT and step.info.action_valid is False
    assert env.layout.read(step.obs.features, "last_action_success").item() == 0.0
    wrong_blueprint = {
        **WAIT,
        "op": int(LifecycleOp.GERMINATE),
        "blueprint": int(BlueprintAction.CONV_HEAVY),
    }  # cnn-only
    step = env.step(wrong_blueprint)
    assert step.info.action_valid is False and env.model is not None
    assert all(s.stage == SeedStage.DORMANT for s in env.model.all_slots())


def test_malformed_action_raises(env: MorphogeneticEnv) -> None:
    env.reset(seed=1)
    with pytest.raises(ValueError, match="lacks head 'op'"):
        env.step({k: v for k, v in WAIT.items() if k != "op"})
    with pytest.raises(ValueError, match="outside"):
        env.step({**WAIT, "op": 6})
    with pytest.raises(ValueError, match="unknown action heads"):
        env.step({**WAIT, "extra": 0})
    with pytest.raises(TypeError, match="int"):
        env.step({**WAIT, "op": 0.5})
    assert env.step({**WAIT, "op": torch.tensor(0)}).info.action_valid


def test_germinate_shows_in_observation(env: MorphogeneticEnv) -> None:
    env.reset(seed=2)
    step = env.step({**WAIT, "op": int(LifecycleOp.GERMINATE), "slot": 2, "blueprint": int(BlueprintAction.LORA)})
    obs, layout = step.obs, env.layout
    assert step.info.executed_op == LifecycleOp.GERMINATE
    assert obs.blueprint_indices.tolist() == [-1, -1, int(BlueprintAction.LORA)]
    stage = layout.read(obs.features, "stage", slot="r0c2")
    assert stage.argmax().item() == 3 and stage.sum().item() == 1.0  # TRAINING is one-hot index 3
    assert layout.read(obs.features, "is_active", slot="r0c2").item() == 1.0
    assert layout.read(obs.features, "seed_age", slot="r0c2").item() == pytest.approx(1 / 12)
    assert layout.read(obs.features, "frac_training").item() == pytest.approx(1 / 3)
    assert torch.count_nonzero(obs.features[layout.slot_block("r0c0")]) == 0
    assert not step.masks.heads["op"][LifecycleOp.GERMINATE]  # one incubating seed at a time


def test_last_epoch_is_a_true_terminal_then_steps_are_refused(env: MorphogeneticEnv) -> None:
    reset = env.reset(seed=4)
    accuracies = [reset.info.val_accuracy]
    for _ in range(SMALL.episode_length - 1):
        step = env.step(WAIT)
        accuracies.append(step.info.val_accuracy)
        assert not (step.terminated or step.truncated) and step.episode is None
        # no growth: the objective is the accuracy, r_t = γ·acc_{t+1} − acc_t
        assert step.reward == env.gamma * accuracies[-1] - accuracies[-2]
    last = env.step(WAIT)
    assert last.terminated and not last.truncated and env.done  # nothing to bootstrap after the last epoch
    assert last.reward == last.info.val_accuracy - accuracies[-1]  # the last step is not discounted
    episode = last.episode
    assert episode is not None and episode.length == SMALL.episode_length == last.info.epoch
    assert episode.final_accuracy == last.info.val_accuracy and episode.rollbacks == 0
    assert episode.objective == episode.final_accuracy and episode.seed_params == 0
    horizon = env.gamma ** (SMALL.episode_length - 1)
    assert episode.discounted_return == pytest.approx(horizon * episode.objective - accuracies[0], abs=1e-9)
    with pytest.raises(EpisodeOverError):
        env.step(WAIT)


def _rollout(seed: int, action_seed: int) -> tuple[list[torch.Tensor], list[float]]:
    env = MorphogeneticEnv(SMALL)
    rng = random.Random(action_seed)
    result = env.reset(seed)
    masks, observations, rewards = result.masks, [result.obs.features], []
    for _ in range(SMALL.episode_length):
        step = env.step(random_valid_action(masks, rng))
        observations.append(step.obs.features)
        rewards.append(step.reward)
        masks = step.masks
        if step.terminated:
            break
    return observations, rewards


def test_episode_summary_tallies_the_steps() -> None:
    env = MorphogeneticEnv(SMALL)
    rng = random.Random(3)
    reset = env.reset(5)
    masks, steps = reset.masks, []
    while not env.done:
        fossilize = {**WAIT, "op": int(LifecycleOp.FOSSILIZE)}  # never valid here: counts as invalid
        steps.append(env.step(fossilize if len(steps) == 1 else random_valid_action(masks, rng)))
        masks = steps[-1].masks
    episode = steps[-1].episode
    assert episode is not None and all(s.episode is None for s in steps[:-1])
    executed = [s.info.executed_op for s in steps if s.info.action_valid]
    assert episode.discounted_return == pytest.approx(sum(env.gamma**t * s.reward for t, s in enumerate(steps)))
    assert episode.reward_components == pytest.approx(
        {
            name: sum(env.gamma**t * s.info.reward_components.as_dict()[name] for t, s in enumerate(steps))
            for name in episode.reward_components
        }
    )
    assert sum(episode.reward_components.values()) == pytest.approx(episode.discounted_return)
    assert episode.length == len(steps) and episode.invalid_actions == sum(not s.info.action_valid for s in steps) >= 1
    assert (episode.germinated, episode.fossilized, episode.pruned) == tuple(
        executed.count(int(op)) for op in (LifecycleOp.GERMINATE, LifecycleOp.FOSSILIZE, LifecycleOp.PRUNE)
    )
    assert episode.final_accuracy == steps[-1].info.val_accuracy and episode.host_params == reset.info.host_params


def test_same_seed_same_episode() -> None:
    obs_a, rewards_a = _rollout(seed=7, action_seed=1)
    obs_b, rewards_b = _rollout(seed=7, action_seed=1)
    assert rewards_a == rewards_b
    assert all(torch.equal(a, b) for a, b in zip(obs_a, obs_b, strict=True))
    obs_c, _ = _rollout(seed=8, action_seed=1)
    assert not torch.equal(obs_a[1], obs_c[1])


def test_observations_are_finite_and_global_rng_untouched() -> None:
    state = torch.random.get_rng_state()
    observations, rewards = _rollout(seed=11, action_seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(bool(torch.isfinite(o).all()) for o in observations) and all(math.isfinite(r) for r in rewards)
