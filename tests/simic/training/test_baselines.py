"""The evaluation baselines on tiny synthetic episodes: valid random actions, the fixed schedule's timing,
and the static and widened networks' parameter counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from episode_summaries import make_summary

from esper.simic.env import EnvConfig, HostTraining, LifecycleSettings, ObjectiveConfig, VectorEnv, VectorStep
from esper.simic.env.actions import action_allowed
from esper.simic.training.baselines import RandomActor, charge_host_growth, fixed_schedule_actor, open_loop_actor
from esper.simic.training.evaluation import (
    OPEN_LOOP,
    STATIC,
    WIDENED,
    EvalConfig,
    VectorEnvPool,
    architecture_rows,
    best_fixed_schedule,
    fixed_schedule_rows,
    open_loop_row,
    play_episodes,
    play_row,
    rule_rows,
)
from esper.simic.training.rollout import ActFn, play_round
from esper.tamiyo.contract import ActionMasks, BlueprintAction, LifecycleOp, Observation


def _row(masks: ActionMasks, i: int) -> ActionMasks:
    assert masks.slot_by_op is not None
    return ActionMasks({h: m[i] for h, m in masks.heads.items()}, masks.slot_by_op[i])


def _row_batch(masks: ActionMasks, i: int) -> ActionMasks:
    """Env ``i``'s masks as a batch of one."""
    assert masks.slot_by_op is not None
    return ActionMasks({h: m[i : i + 1] for h, m in masks.heads.items()}, masks.slot_by_op[i : i + 1])


def test_random_actions_are_always_valid(tiny_env: EnvConfig) -> None:
    venv = VectorEnv(tiny_env, 4)
    space = venv.action_space
    actor = RandomActor(space, [torch.Generator().manual_seed(i) for i in range(4)])
    ops: list[int] = []

    def checked(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        actions = actor(obs, masks)
        for i in range(4):
            action = {h: int(a[i]) for h, a in actions.items()}
            assert action_allowed(action, _row(masks, i), space), action
            ops.append(action["op"])
        return actions

    for round_seeds in ([0, 1, 2, 3], [4, 5, 6, 7]):
        play_round(venv, checked, round_seeds)
    assert len(set(ops)) > 1  # it does more than WAIT


def test_random_episodes_do_not_depend_on_the_batching(tiny_env: EnvConfig) -> None:
    config = EvalConfig(episodes=3, seed=2)
    by_two, by_three = (rule_rows(VectorEnvPool(tiny_env, n), config)[2] for n in (2, 3))
    assert by_two.episodes == by_three.episodes


def _schedule_env(tiny_env: EnvConfig) -> EnvConfig:
    """Long enough and with a short enough dwell for seeds to reach HOLDING and be fossilized."""
    return dataclasses.replace(tiny_env, episode_length=12, lifecycle=LifecycleSettings(training_dwell=1))


def test_the_fixed_schedule_grows_and_fossilizes_as_soon_as_the_masks_allow(tiny_env: EnvConfig) -> None:
    venv = VectorEnv(_schedule_env(tiny_env), 1)
    act = fixed_schedule_actor(venv.action_space, BlueprintAction.MLP_SMALL)
    seen: list[tuple[ActionMasks, dict[str, torch.Tensor]]] = []

    def recording(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        actions = act(obs, masks)
        seen.append((masks, actions))
        return actions

    steps: list[VectorStep] = []
    episode = play_round(venv, recording, [0], on_step=steps.append).episodes[0]
    first = seen[0][1]
    assert (int(first["op"][0]), int(first["slot"][0]), int(first["blueprint"][0])) == (
        LifecycleOp.GERMINATE,
        0,
        BlueprintAction.MLP_SMALL,
    )
    for (masks, _), step in zip(seen, steps, strict=True):
        info = step.infos[0]
        assert info is not None and info.action_valid
        allowed = masks.heads["op"][0]
        if allowed[LifecycleOp.GERMINATE]:
            assert info.executed_op == LifecycleOp.GERMINATE
        elif allowed[LifecycleOp.FOSSILIZE]:
            assert info.executed_op == LifecycleOp.FOSSILIZE
        else:
            assert info.executed_op == LifecycleOp.WAIT
    assert episode.fossilized >= 1 and episode.pruned == 0
    assert set(episode.final_blueprints.values()) == {"mlp_small"}


def test_a_single_seed_schedule_grows_only_its_slot(tiny_env: EnvConfig) -> None:
    venv = VectorEnv(_schedule_env(tiny_env), 1)
    act = fixed_schedule_actor(venv.action_space, BlueprintAction.MLP_SMALL, slot=1)
    episode = play_round(venv, act, [0]).episodes[0]
    assert (episode.germinated, episode.fossilized, episode.pruned) == (1, 1, 0)
    assert dict(episode.final_blueprints) == {"r0c1": "mlp_small"}


def test_the_widened_host_of_a_varied_task_widens_each_episode_s_own_host() -> None:
    """Each episode draws its host, so the widened baseline starts from (and charges against) that host."""
    config = EnvConfig(task="digits-varied", episode_length=1, host_training=HostTraining(batch_size=600))
    pool = VectorEnvPool(config, 3)
    seeds = EvalConfig(episodes=3).episode_seeds()

    def attention_at_r0c0(venv: VectorEnv, batch: range) -> ActFn:
        return fixed_schedule_actor(venv.action_space, BlueprintAction.ATTENTION, slot=0)

    learned = play_episodes(pool, seeds, attention_at_r0c0)
    hosts = [pool.host_shape(seed) for seed in seeds]
    assert [e.host_params for e in learned] == [h.num_params for h in hosts]
    assert len({h.num_params for h in hosts}) > 1
    _, widened = architecture_rows(pool, seeds, learned)
    for grown, wide, added, host in zip(learned, widened.episodes, widened.host_params_added, hosts, strict=True):
        target = grown.host_params + grown.seed_params
        assert added == wide.host_params - host.num_params
        assert abs(wide.host_params - target) <= 0.1 * target


def test_one_fixed_schedule_per_blueprint_and_the_best_by_objective(tiny_env: EnvConfig) -> None:
    pool = VectorEnvPool(tiny_env, 2)
    rows = fixed_schedule_rows(pool, EvalConfig(episodes=2).episode_seeds())
    assert [r.policy for r in rows] == [
        "fixed schedule (attention)",
        "fixed schedule (norm)",
        "fixed schedule (lora)",
        "fixed schedule (lora_large)",
        "fixed schedule (mlp_small)",
        "fixed schedule (mlp)",
    ]
    best = best_fixed_schedule(rows)
    winner = max(rows, key=lambda r: r.mean_objective)
    assert best.episodes == winner.episodes
    assert best.policy == winner.policy.replace("fixed schedule (", "fixed schedule (best: ")


def test_static_and_widened_networks_have_the_parameters_they_claim(tiny_env: EnvConfig) -> None:
    """The static network has exactly the learned seeds' parameters; the widened host the learned total."""
    pool = VectorEnvPool(tiny_env, 3)
    seeds = EvalConfig(episodes=3, seed=7).episode_seeds()
    space = pool.get(3).action_space

    def gated_random(venv: VectorEnv, batch: range) -> ActFn:
        return RandomActor(space, [torch.Generator().manual_seed(40 + i) for i in batch])

    learned = play_episodes(pool, seeds, gated_random)
    assert any(e.final_blueprints for e in learned)
    static, widened = architecture_rows(pool, seeds, learned)
    assert (static.policy, widened.policy) == (STATIC, WIDENED)
    assert [e.seed_params for e in static.episodes] == [e.seed_params for e in learned]
    assert [dict(e.final_blueprints) for e in static.episodes] == [dict(e.final_blueprints) for e in learned]
    base = learned[0].host_params
    for grown, wide, added in zip(learned, widened.episodes, widened.host_params_added, strict=True):
        target = grown.host_params + grown.seed_params
        assert wide.seed_params == 0 and added == wide.host_params - base >= 0
        assert abs(wide.host_params - target) <= 0.05 * target
    assert widened.params_added == widened.host_params_added


def test_a_widened_host_pays_for_its_extra_parameters_like_seeds() -> None:
    """Hand-worked: 1,000 extra parameters on a 2,000-parameter host for 10 epochs."""
    episode = make_summary(
        discounted_return=1.0,
        reward_components={"accuracy": 1.0},
        length=10,
        final_accuracy=90.0,
        host_params=3000,
        objective=90.0,
    )
    charged = charge_host_growth(episode, 2000, ObjectiveConfig(param_price=0.5, compute_price=0.02))
    assert charged.extra_compute == pytest.approx(5.0)  # 10 epochs x 1000 / 2000
    assert charged.objective == pytest.approx(90.0 - 0.5 * 1.0 - 0.02 * 5.0)
    assert charged.discounted_return == episode.discounted_return


def test_the_open_loop_row_replays_the_most_common_sequence_blind(tiny_env: EnvConfig) -> None:
    """Episodes whose learned sequence is the script are replayed exactly (same seed, same actions, same
    episode); the others play the script too, whatever they observe."""
    pool = VectorEnvPool(tiny_env, 2)
    seeds = EvalConfig(episodes=4, seed=3).episode_seeds()
    space = pool.get(2).action_space

    def two_scripts(venv: VectorEnv, batch: range) -> ActFn:
        """Episodes 0, 1 and 3 grow an mlp_small seed; episode 2 grows attention in slot 1."""
        scripts = [BlueprintAction.ATTENTION if i == 2 else BlueprintAction.MLP_SMALL for i in batch]
        actors = [
            fixed_schedule_actor(space, bp, slot=1 if bp == BlueprintAction.ATTENTION else None) for bp in scripts
        ]

        def act(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
            parts = [actor(obs, _row_batch(masks, i)) for i, actor in enumerate(actors)]
            return {h: torch.cat([part[h] for part in parts]) for h in parts[0]}

        return act

    learned = play_row("learned", pool, seeds, two_scripts)
    replay = open_loop_row(pool, seeds, learned)
    assert replay.policy == OPEN_LOOP
    script = learned.traces[0].actions
    assert learned.traces[1].actions == script != learned.traces[2].actions
    assert [t.actions for t in replay.traces] == [script] * 4
    for i in (0, 1, 3):
        assert replay.episodes[i] == learned.episodes[i]
    assert dict(replay.episodes[2].final_blueprints) == dict(learned.episodes[0].final_blueprints)


def test_the_open_loop_actor_waits_where_the_masks_refuse_its_script(tiny_env: EnvConfig) -> None:
    venv = VectorEnv(_schedule_env(tiny_env), 1)
    space = venv.action_space
    germinate = ("GERMINATE", (("alpha_target", 0), ("blueprint", int(BlueprintAction.NORM)), ("slot", 0)))
    fossilize = ("FOSSILIZE", (("slot", 0),))
    ops: list[int] = []
    actor = open_loop_actor(space, [fossilize, germinate, germinate])  # fossilize with no seed; germinate twice

    def watched(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        actions = actor(obs, masks)
        ops.append(int(actions["op"][0]))
        return actions

    episode = play_round(venv, watched, [0]).episodes[0]
    wait, grow = int(LifecycleOp.WAIT), int(LifecycleOp.GERMINATE)
    assert ops[:4] == [wait, grow, wait, wait]  # refused, played, refused (slot taken), script over
    assert set(ops[3:]) == {wait} and episode.germinated == 1
