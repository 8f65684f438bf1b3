"""Property: random sequences of mask-valid actions never raise, never leave the transition table,
always leave a valid action, and keep every slot's state self-consistent."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import esper.simic.env.slot as slot_module
from esper.simic.env import EnvConfig, HostTraining, LifecycleSettings, MorphogeneticEnv, SyntheticTask
from esper.tamiyo.contract import VALID_TRANSITIONS, LifecycleOp, SeedStage, check_masks_nonempty, check_transition

OCCUPIED = {SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING, SeedStage.FOSSILIZED}


def _draw_action(data: st.DataObject, masks) -> dict[str, int]:  # type: ignore[no-untyped-def]
    valid_ops = [i for i, ok in enumerate(masks.heads["op"].tolist()) if ok]
    active_ops = [op for op in valid_ops if op != LifecycleOp.WAIT]
    prefer_active = data.draw(st.integers(0, 4)) > 0 and active_ops
    op = data.draw(st.sampled_from(active_ops if prefer_active else valid_ops))
    action = {
        head: data.draw(st.sampled_from([i for i, ok in enumerate(m.tolist()) if ok]))
        for head, m in masks.heads.items()
    }
    action["slot"] = data.draw(st.sampled_from([i for i, ok in enumerate(masks.slot_by_op[op].tolist()) if ok]))
    action["op"] = op
    return action


# Slow: whole episodes on a real env, ~0.5 s an example. The fast suite keeps the mask-driven walks
# over the contract (tests/tamiyo/contract/test_masks.py) and the slot's own lifecycle tests.
@pytest.mark.slow
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    host=st.sampled_from(["mlp", "cnn"]),
    num_slots=st.integers(1, 3),
    auto_advance=st.booleans(),
    dwell=st.integers(0, 2),
    prune_age=st.integers(0, 3),
    embargo=st.integers(0, 2),
    max_seeds=st.integers(0, 2),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_random_valid_actions_keep_the_lifecycle_legal(
    host: str,
    num_slots: int,
    auto_advance: bool,
    dwell: int,
    prune_age: int,
    embargo: int,
    max_seeds: int,
    seed: int,
    data: st.DataObject,
) -> None:
    config = EnvConfig(
        task="synthetic",
        host=host,
        slot_ids=tuple(f"r0c{i}" for i in range(num_slots)),
        episode_length=18,
        synthetic=SyntheticTask(train_size=32, val_size=16),
        host_training=HostTraining(batch_size=32),
        lifecycle=LifecycleSettings(
            training_dwell=dwell,
            min_prune_age=prune_age,
            embargo_epochs=embargo,
            max_seeds=max_seeds,
            auto_advance=auto_advance,
        ),
    )
    transitions: list[tuple[SeedStage, SeedStage]] = []

    def recording_check(source: SeedStage, target: SeedStage) -> SeedStage:
        transitions.append((SeedStage(source), SeedStage(target)))
        return check_transition(source, target)

    env = MorphogeneticEnv(config)
    with mock.patch.object(slot_module, "check_transition", recording_check):
        result = env.reset(seed)
        masks, done = result.masks, False
        while not done:
            check_masks_nonempty(masks)
            assert masks.heads["op"][LifecycleOp.WAIT]
            action = _draw_action(data, masks)
            step = env.step(action)
            if not step.info.action_valid:
                assert action["op"] in (LifecycleOp.ADVANCE, LifecycleOp.FOSSILIZE)  # only gates refuse valid actions
            assert env.model is not None
            live = 0
            for slot in env.model.all_slots():
                assert slot.occupied == (slot.stage in OCCUPIED)
                assert 0.0 <= slot.alpha <= 1.0
                if slot.stage == SeedStage.FOSSILIZED:
                    assert slot.alpha == 1.0
                if not slot.occupied:
                    assert slot.alpha == 0.0
                live += slot.stage in OCCUPIED
            if max_seeds:
                assert live <= max_seeds
            masks, done = step.masks, step.terminated or step.truncated
    assert all(target in VALID_TRANSITIONS[source] for source, target in transitions)
