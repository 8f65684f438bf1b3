"""Issue 9's ordering test at the env level: fixed scripted policies on the same episode seeds rank
the same by discounted return as by the objective (exactly: the return is affine in it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from esper.simic.env import EnvConfig, EpisodeSummary, HostTraining, LifecycleSettings, MorphogeneticEnv, SyntheticTask
from esper.tamiyo.contract import ActionMasks, LifecycleOp

CONFIG = EnvConfig(
    task="synthetic",
    synthetic=SyntheticTask(train_size=64, val_size=32),
    host_training=HostTraining(batch_size=32),
    episode_length=10,
    lifecycle=LifecycleSettings(training_dwell=2, min_prune_age=2),
)
GAMMA = 0.9
Script = Callable[[int, ActionMasks], LifecycleOp]
"""(step, masks) → the op to play; the other heads take their first valid index."""


def _allowed(masks: ActionMasks, op: LifecycleOp) -> bool:
    return bool(masks.heads["op"][op])


def _grow(start: int, finish: LifecycleOp) -> Script:
    """GERMINATE at step ``start``, then ``finish`` (FOSSILIZE or PRUNE) as soon as the masks allow it."""

    def script(step: int, masks: ActionMasks) -> LifecycleOp:
        if step == start and _allowed(masks, LifecycleOp.GERMINATE):
            return LifecycleOp.GERMINATE
        return finish if step > start and _allowed(masks, finish) else LifecycleOp.WAIT

    return script


SCRIPTS: dict[str, Script] = {
    "no growth": lambda step, masks: LifecycleOp.WAIT,
    "germinate early, fossilize": _grow(0, LifecycleOp.FOSSILIZE),
    "germinate late, fossilize": _grow(2, LifecycleOp.FOSSILIZE),
    "germinate, prune": _grow(0, LifecycleOp.PRUNE),
}


#: Fast blending to full strength (style SIGMOID_ADD, tempo FAST, alpha target 1.0), as in the
#: scripted digits episode, so a seed germinated mid-episode can still be fossilized.
GROWTH_HEADS = {"style": 2, "tempo": 0, "alpha_target": 2}


def _action(masks: ActionMasks, op: LifecycleOp) -> dict[str, int]:
    action = {head: int(mask.nonzero()[0]) for head, mask in masks.heads.items()}
    action.update({head: i for head, i in GROWTH_HEADS.items() if bool(masks.heads[head][i])})
    assert masks.slot_by_op is not None
    action["slot"] = int(masks.slot_by_op[op].nonzero()[0])
    action["op"] = int(op)
    return action


def _play(env: MorphogeneticEnv, seed: int, script: Script) -> tuple[float, EpisodeSummary]:
    reset = env.reset(seed)
    masks, step = reset.masks, 0
    while not env.done:
        result = env.step(_action(masks, script(step, masks)))
        masks, step = result.masks, step + 1
    assert result.episode is not None and result.terminated and not result.truncated
    return reset.info.val_accuracy, result.episode


def test_scripted_policies_rank_the_same_by_return_and_by_objective() -> None:
    env = MorphogeneticEnv(CONFIG, gamma=GAMMA)
    results = {name: _play(env, 0, script) for name, script in SCRIPTS.items()}
    episodes = {name: episode for name, (_, episode) in results.items()}
    assert episodes["germinate early, fossilize"].fossilized == episodes["germinate late, fossilize"].fossilized == 1
    assert episodes["germinate, prune"].pruned == 1 and episodes["germinate, prune"].seed_params == 0
    assert len({e.objective for e in episodes.values()}) == len(SCRIPTS)  # distinct, so the order is a real check
    by_return = sorted(episodes, key=lambda name: episodes[name].discounted_return)
    by_objective = sorted(episodes, key=lambda name: episodes[name].objective)
    assert by_return == by_objective
    (start,) = {accuracy for accuracy, _ in results.values()}  # o_0 is fixed by the episode seed
    for episode in episodes.values():
        horizon = GAMMA ** (CONFIG.episode_length - 1)
        assert episode.discounted_return == pytest.approx(horizon * episode.objective - start, abs=1e-9)
