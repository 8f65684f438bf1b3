"""A scripted episode on digits with the impaired CNN host: a good seed, fossilized, beats the seedless host.

Measured (CPU, torch 2.15, default EnvConfig(host="cnn")): final validation accuracy without seeds
28.5 / 32.7 % (env seeds 0 / 1); germinating conv_heavy at r0c1 on step 3 and fossilizing it as
soon as FOSSILIZE is allowed: 73.0 / 76.7 %, i.e. gains of 44–45 points (over seeds 0–3 the gain
ranged 36–54 points). The asserted margin, 20 points, is under half the smallest gain measured.
"""

from __future__ import annotations

import pytest

from esper.simic.env import EnvConfig, MorphogeneticEnv
from esper.tamiyo.contract import BlueprintAction, LifecycleOp, SeedStage

WAIT = {"slot": 0, "blueprint": 0, "style": 2, "tempo": 0, "alpha_target": 2, "alpha_speed": 0, "alpha_curve": 0, "op": 0}


def _episode(env: MorphogeneticEnv, seed: int, grow: bool, slot: int, blueprint: BlueprintAction) -> float:
    result = env.reset(seed)
    masks = result.masks
    for step in range(env.config.episode_length):
        action = dict(WAIT)
        if grow and step == 3:
            action.update(op=int(LifecycleOp.GERMINATE), slot=slot, blueprint=int(blueprint))
        elif grow and bool(masks.heads["op"][LifecycleOp.FOSSILIZE]):
            action.update(op=int(LifecycleOp.FOSSILIZE), slot=slot)
        outcome = env.step(action)
        masks = outcome.masks
        assert not outcome.terminated
    assert outcome.truncated
    assert env.model is not None
    if grow:
        assert env.model.all_slots()[slot].stage == SeedStage.FOSSILIZED
        assert outcome.info["episode"]["fossilized"] == 1
    return float(outcome.info["episode"]["final_accuracy"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "host,slot,blueprint,margin",
    [("cnn", 1, BlueprintAction.CONV_HEAVY, 20.0), ("mlp", 0, BlueprintAction.MLP, 8.0)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_fossilized_seed_beats_the_seedless_host(host: str, slot: int, blueprint: BlueprintAction, margin: float, seed: int) -> None:
    env = MorphogeneticEnv(EnvConfig(host=host))
    baseline = _episode(env, seed, False, slot, blueprint)
    grown = _episode(env, seed, True, slot, blueprint)
    print(f"{host} seed {seed}: baseline {baseline:.1f}%, with fossilized {blueprint.blueprint_id} {grown:.1f}%")
    assert grown > baseline + margin
