"""A scripted episode on digits with each impaired host: a good seed, fossilized, beats the seedless host.

Script: WAIT, except GERMINATE on step 3 (style SIGMOID_ADD, tempo FAST, target 1.0) and FOSSILIZE
as soon as the masks allow it. Final validation accuracy measured with the default ``EnvConfig``
(CPU, torch 2.15, 2 threads; env seeds 0 / 1):

- cnn, conv_heavy at r0c1: 18.8 → 67.2 % and 28.3 → 78.9 % (gains 48.4 and 50.6 points; over
  seeds 0–3 with 1 thread the gains were 36–54). Asserted margin: 20 points.
- mlp, mlp at r0c0: 70.2 → 89.4 % and 75.4 → 92.5 % (gains 19.2 and 17.1; 15–21 over seeds
  0–3). Asserted margin: 8 points.

Each margin is under half the smaller of the two gains the test measures.
"""

from __future__ import annotations

import pytest

from esper.simic.env import EnvConfig, MorphogeneticEnv
from esper.tamiyo.contract import BlueprintAction, LifecycleOp, SeedStage

WAIT = {
    "slot": 0,
    "blueprint": 0,
    "style": 2,
    "tempo": 0,
    "alpha_target": 2,
    "alpha_speed": 0,
    "alpha_curve": 0,
    "op": 0,
}


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
        assert outcome.terminated == (step == env.config.episode_length - 1) and not outcome.truncated
    assert env.model is not None
    if grow:
        assert env.model.all_slots()[slot].stage == SeedStage.FOSSILIZED
        assert outcome.episode is not None and outcome.episode.fossilized == 1
    assert outcome.episode is not None
    return outcome.episode.final_accuracy


@pytest.mark.slow
@pytest.mark.parametrize(
    "host,slot,blueprint,margin",
    [("cnn", 1, BlueprintAction.CONV_HEAVY, 20.0), ("mlp", 0, BlueprintAction.MLP, 8.0)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_fossilized_seed_beats_the_seedless_host(
    host: str, slot: int, blueprint: BlueprintAction, margin: float, seed: int
) -> None:
    env = MorphogeneticEnv(EnvConfig(task="digits", host=host))  # type: ignore[arg-type]
    baseline = _episode(env, seed, False, slot, blueprint)
    grown = _episode(env, seed, True, slot, blueprint)
    print(f"{host} seed {seed}: baseline {baseline:.1f}%, with fossilized {blueprint.blueprint_id} {grown:.1f}%")
    assert grown > baseline + margin
