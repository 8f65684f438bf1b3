"""Episode traces: one line per step per episode per policy, legal stage paths, sequence diversity."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch

from esper.simic import cli
from esper.simic.env import DEFAULT_GAMMA, EnvConfig, LifecycleSettings, VectorEnv
from esper.simic.training import EvalConfig, TrainConfig, evaluate, train
from esper.simic.training.baselines import no_growth_actor
from esper.simic.training.evaluation import NO_GROWTH, WIDENED
from esper.simic.training.rollout import ActFn, play_round
from esper.simic.training.traces import EpisodeTrace, TraceRecorder, sequence_diversity, write_traces
from esper.tamiyo.contract import VALID_TRANSITIONS, ActionMasks, LifecycleOp, Observation, SeedStage

#: Most stage changes one step can make to a slot: the op (GERMINATE/PRUNE/FOSSILIZE), the
#: lifecycle tick (auto-advance through two gates) and a governor rollback's prune.
MAX_HOPS_PER_STEP = 3

WAIT = ("WAIT", ())
#: Stages in which a slot holds no seed module.
EMPTY_STAGES = frozenset({SeedStage.DORMANT, SeedStage.PRUNED, SeedStage.EMBARGOED, SeedStage.RESETTING})


def random_actor(generator: torch.Generator) -> ActFn:
    """A random policy: an allowed op, an allowed slot for it, every other head uniform over its mask."""

    def act(obs: Observation, masks: ActionMasks) -> Mapping[str, torch.Tensor]:
        del obs
        actions = {
            head: torch.multinomial(mask.float(), 1, generator=generator).squeeze(1)
            for head, mask in masks.heads.items()
        }
        assert masks.slot_by_op is not None
        slot_mask = masks.slot_by_op[torch.arange(len(actions["op"])), actions["op"]]
        actions["slot"] = torch.multinomial(slot_mask.float(), 1, generator=generator).squeeze(1)
        return actions

    return act


def record(venv: VectorEnv, act: ActFn, seeds: list[int], batch: int) -> tuple[EpisodeTrace, ...]:
    """Play ``seeds`` in rounds of ``batch`` episodes with ``act``; return the recorded traces."""
    recorder = TraceRecorder(venv.action_space)
    for start in range(0, len(seeds), batch):
        round_seeds = seeds[start : start + batch]
        assert len(round_seeds) == venv.num_envs
        play_round(venv, recorder.watch(act, round_seeds), round_seeds, on_step=recorder.on_step)
    return recorder.episodes


def reachable(source: SeedStage, hops: int) -> set[SeedStage]:
    """Stages reachable from ``source`` in at most ``hops`` legal transitions (``source`` included)."""
    frontier, seen = {source}, {source}
    for _ in range(hops):
        frontier = {nxt for stage in frontier for nxt in VALID_TRANSITIONS[stage]} - seen
        seen |= frontier
    return seen


def test_sequence_diversity_is_distinct_sequences_over_episodes() -> None:
    a, b, c = (WAIT, WAIT), (("GERMINATE", (("slot", 0),)), WAIT), (WAIT, ("GERMINATE", (("slot", 1),)))
    assert sequence_diversity([a, a, a, a]) == 0.25
    assert sequence_diversity([a, b, a, c]) == 0.75
    assert sequence_diversity([a, b, c]) == 1.0
    with pytest.raises(ValueError, match="at least one episode"):
        sequence_diversity([])


def test_no_growth_traces_one_line_per_step_and_one_sequence(tiny_env: EnvConfig, tmp_path: Path) -> None:
    venv = VectorEnv(tiny_env, 2)
    traces = record(venv, no_growth_actor(venv.action_space), [11, 12, 13, 14], batch=2)
    assert [(t.episode, t.seed) for t in traces] == [(0, 11), (1, 12), (2, 13), (3, 14)]
    assert all(len(t.steps) == tiny_env.episode_length for t in traces)
    assert all(t.actions == (WAIT,) * tiny_env.episode_length for t in traces)
    assert sequence_diversity([t.actions for t in traces]) == 0.25
    path = write_traces(tmp_path / "traces.jsonl", [("no growth", traces)])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 4 * tiny_env.episode_length
    assert list(lines[0])[:4] == ["policy", "episode", "seed", "step"]
    first = lines[0]
    assert (first["policy"], first["episode"], first["seed"], first["step"], first["epoch"]) == (
        "no growth",
        0,
        11,
        0,
        1,
    )
    assert first["op"] == "WAIT" and first["heads"] == {} and first["action_valid"] is True
    assert [s["slot_id"] for s in first["slots"]] == list(tiny_env.slot_ids)
    assert all(s["stage"] == "DORMANT" and s["params"] == 0 and s["blueprint"] is None for s in first["slots"])
    assert first["seed_params"] == 0 and first["extra_compute"] == 0.0 and first["host_params"] > 0
    assert first["reward"] == pytest.approx(sum(first["reward_components"].values()))
    assert {"val_accuracy", "val_loss"} <= set(first)


def test_random_policy_traces_follow_the_transition_table(tiny_env: EnvConfig) -> None:
    env = dataclasses.replace(
        tiny_env,
        episode_length=16,
        lifecycle=LifecycleSettings(training_dwell=1, min_prune_age=1, embargo_epochs=1),
    )
    venv = VectorEnv(env, 4)
    seeds = list(range(100, 104))
    traces = record(venv, random_actor(torch.Generator().manual_seed(2)), seeds, batch=4)
    assert len(traces) == len(seeds) and all(len(t.steps) == env.episode_length for t in traces)
    seen_stages: set[str] = set()
    for trace in traces:
        before = {slot_id: SeedStage.DORMANT for slot_id in env.slot_ids}
        for step in trace.steps:
            assert step.epoch == step.step + 1
            relevant = venv.action_space.relevance[int(LifecycleOp[step.op])]
            assert set(step.heads) == {
                h for h, r in zip(venv.action_space.head_names, relevant, strict=True) if r and h != "op"
            }
            for slot in step.slots:
                stage = SeedStage[slot.stage]
                assert stage in reachable(before[slot.slot_id], MAX_HOPS_PER_STEP), (trace.episode, step.step, slot)
                if stage in EMPTY_STAGES:
                    assert (slot.params, slot.alpha) == (0, 0.0)
                before[slot.slot_id] = stage
                seen_stages.add(slot.stage)
            assert step.seed_params == sum(slot.params for slot in step.slots)
    # this sampling seed exercises the whole lifecycle in 4 episodes (GERMINATED auto-advances within its step)
    assert seen_stages == {stage.name for stage in SeedStage} - {"UNKNOWN", "GERMINATED"}
    assert sequence_diversity([t.actions for t in traces]) == 1.0


def test_recorder_refuses_a_new_round_before_the_last_one_ended(tiny_env: EnvConfig) -> None:
    venv = VectorEnv(tiny_env, 1)
    recorder = TraceRecorder(venv.action_space)
    recorder.watch(no_growth_actor(venv.action_space), [1])
    with pytest.raises(RuntimeError, match="unfinished episode"):
        recorder.watch(no_growth_actor(venv.action_space), [2])


def test_evaluate_traces_every_step_of_every_row(make_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    train(make_config("run", rounds=1))
    report = evaluate(tmp_path / "run" / "checkpoint_last.pt", EvalConfig(episodes=2, num_envs=2))
    assert WIDENED in [row.policy for row in report.rows]  # the costly baselines are traced too
    for row in report.rows:
        assert [(t.episode, t.seed) for t in row.traces] == list(enumerate(report.seeds))
        assert [len(t.steps) for t in row.traces] == [e.length for e in row.episodes]
        assert [t.steps[-1].val_accuracy for t in row.traces] == [e.final_accuracy for e in row.episodes]
        assert [t.steps[-1].seed_params for t in row.traces] == [e.seed_params for e in row.episodes]
        assert [t.steps[-1].host_params for t in row.traces] == [e.host_params for e in row.episodes]
        returns = [sum(DEFAULT_GAMMA**s.step * s.reward for s in t.steps) for t in row.traces]
        assert returns == pytest.approx([e.discounted_return for e in row.episodes])
        if row.policy != WIDENED:  # the widened host's growth is charged after the episode, not by the env
            assert [t.steps[-1].extra_compute for t in row.traces] == [e.extra_compute for e in row.episodes]
    shares = report.to_json()["distinct_action_sequences_per_episode"]
    assert list(shares) == [row.policy for row in report.rows] and shares[NO_GROWTH] == 0.5
    assert report.table().splitlines()[-1].startswith("distinct action sequences / episodes")


def test_eval_command_writes_the_traces_next_to_its_report(
    make_config: Callable[..., TrainConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(make_config("run", rounds=1))
    checkpoint = str(tmp_path / "run" / "checkpoint_last.pt")
    cheap = ["--episodes", "2", "--num-envs", "2", "--no-costly-baselines"]
    assert cli.main(["eval", checkpoint, *cheap]) == 0
    lines = (tmp_path / "run" / "traces.jsonl").read_text().splitlines()
    rows = json.loads((tmp_path / "run" / "eval.json").read_text())["rows"]
    assert len(lines) == len(rows) * 2 * 4  # rows x episodes x steps
    assert f"wrote {tmp_path / 'run' / 'traces.jsonl'}" in capsys.readouterr().out
    elsewhere = tmp_path / "elsewhere" / "t.jsonl"
    assert cli.main(["eval", checkpoint, *cheap, "--traces", str(elsewhere)]) == 0
    assert elsewhere.read_text().splitlines() == lines
