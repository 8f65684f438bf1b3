"""Is the task a benchmark? Every fixed schedule and baseline on held-out episodes; prints JSON.

A task where one open-loop script is as good as anything cannot show that a controller reads
the state. For ``--task`` this plays the same held-out episodes (``eval``'s seed stream) with:

* every fixed schedule: ``eval``'s per blueprint (grow every slot, first free slot first) and the
  single-seed ones (one ``blueprint`` seed in one slot, germinated as early as allowed), plus
  no growth (the empty schedule);
* the heuristic and the random valid policy;
* the static final architecture and the widened host of the best fixed schedule's networks;
* on a varied task, the *descriptor rule*: a hand-written policy that reads only the episode block
  of the observation (slot widths, host non-linearity) and plays one single-seed schedule
  (:func:`rule_choice`).

It reports each row's mean and std of the objective, which schedule wins each episode, the
*oracle* (the best schedule of each episode, picked after the fact: an upper bound that also
profits from per-episode luck) and its gap to the best single schedule, and the descriptor rule's
gap (no hindsight), each with a 95 % percentile bootstrap interval over the episodes, and every
row's per-episode objectives. ``--versus`` plays only the descriptor rule and the named schedules
(``attention@r0c0``: single seed; ``attention``: ``eval``'s grow-every-slot schedule), to check
the rule on fresh episodes (``--seed``) without replaying every row; a name's modifiers
``from=EPOCH`` (germinate no earlier) and ``prune`` (try the seed, prune it if its counterfactual
contribution is not positive) measure what timing and pruning are worth.

Usage::

    uv run python scripts/bench_benchmark.py --task digits-varied --episodes 32
    uv run python scripts/bench_benchmark.py --task digits --episodes 32 --out digits.json
    uv run python scripts/bench_benchmark.py --task digits-varied --seed 4321 --versus attention@r0c0 attention
    uv run python scripts/bench_benchmark.py --task digits-varied --versus attention@r0c0,from=20 attention@r0c0,prune
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from esper.simic.env import EnvConfig, VectorEnv
from esper.simic.env.variants import WIDTH_SCALE, draw_variant
from esper.simic.training.baselines import fixed_schedule_actor, wait_actions
from esper.simic.training.eval_report import EvalRow
from esper.simic.training.evaluation import (
    NO_GROWTH,
    EvalConfig,
    VectorEnvPool,
    architecture_rows,
    fixed_schedule_rows,
    play_row,
    rule_rows,
)
from esper.simic.training.rollout import ActFn
from esper.simic.training.study import bootstrap_mean_interval
from esper.tamiyo.contract import ActionMasks, ActionSpace, BlueprintAction, LifecycleOp, Observation, ObservationLayout

#: Blueprints of the single-seed schedules (lora is linear: on these hosts it is a linear map the
#: next layer absorbs, so it only adds cost; norm has little to add to blocks that end in a norm).
SINGLE_SEED_BLUEPRINTS = (
    BlueprintAction.MLP,
    BlueprintAction.MLP_SMALL,
    BlueprintAction.ATTENTION,
)
#: Slots of the single-seed schedules (r0c2 follows the bottleneck on every host here).
SINGLE_SEED_SLOTS = (0, 1)
#: The descriptor rule grows an ``mlp`` seed only in slots up to this wide (docs/design/benchmark.md).
RULE_MLP_MAX_WIDTH = 8
#: ...and, on a ReLU host, an ``mlp_small`` seed in ``r0c1`` only when that slot is at most this wide.
RULE_AFFORDABLE_WIDTH = 32
DESCRIPTOR_RULE = "descriptor rule"


def single_seed_rows(pool: VectorEnvPool, seeds: Sequence[int]) -> tuple[EvalRow, ...]:
    """One row per (blueprint, slot) of the single-seed schedules."""
    rows = []
    for blueprint in SINGLE_SEED_BLUEPRINTS:
        for slot in SINGLE_SEED_SLOTS:

            def schedule(venv: VectorEnv, batch: range, bp: BlueprintAction = blueprint, k: int = slot) -> ActFn:
                del batch
                return fixed_schedule_actor(venv.action_space, bp, k)

            slot_id = pool.config.slot_ids[slot]
            rows.append(play_row(f"single seed ({blueprint.blueprint_id} @ {slot_id})", pool, seeds, schedule))
    return tuple(rows)


def rule_choice(widths: Sequence[int], nonlinear: bool) -> tuple[BlueprintAction, int] | None:
    """The descriptor rule's single seed ``(blueprint, slot index)`` for one episode, or ``None`` for no growth.

    ``widths`` are the slots' widths in slot-head order (``r0c0`` first). Written from probes of a few
    hosts before the held-out episodes were played: a linear host lacks capacity before its
    bottleneck, so it gets the largest seed ``r0c0`` affords (``mlp`` when narrow, else
    ``attention``); a ReLU host is nearly saturated, so it gets a cheap ``mlp_small`` seed in a
    not-too-wide ``r0c1`` when ``r0c0`` is narrow, and no seed when ``r0c0`` is wide.
    """
    if nonlinear:
        if widths[0] <= RULE_MLP_MAX_WIDTH and widths[1] <= RULE_AFFORDABLE_WIDTH:
            return BlueprintAction.MLP_SMALL, 1
        return None
    return (BlueprintAction.MLP if widths[0] <= RULE_MLP_MAX_WIDTH else BlueprintAction.ATTENTION), 0


def descriptor_rule_actor(venv: VectorEnv) -> ActFn:
    """The descriptor rule as an act function: reads the episode block, then plays that single-seed schedule."""
    layout: ObservationLayout = venv.layout
    space = venv.action_space

    def act(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        actions = wait_actions(masks, space)
        widths = torch.round(2.0 ** (obs.features[:, layout.episode("slot_width")] * WIDTH_SCALE)).to(torch.int64)
        nonlinear = obs.features[:, layout.episode("host_nonlinear")][:, 0] > 0.5
        for i in range(widths.shape[0]):
            choice = rule_choice(widths[i].tolist(), bool(nonlinear[i]))
            if choice is None:
                continue
            chosen = fixed_schedule_actor(space, *choice)(obs, masks)
            for head, values in chosen.items():
                actions[head][i] = values[i]
        return actions

    return act


def interval(values: Sequence[float]) -> dict[str, float]:
    ci = bootstrap_mean_interval(values)
    return {"mean": round(float(np.mean(values)), 3), "low": round(ci.low, 3), "high": round(ci.high, 3)}


def _std(values: np.ndarray) -> float:
    """Sample standard deviation (0 for a single value)."""
    return round(float(values.std(ddof=1)), 3) if values.size > 1 else 0.0


def row_summary(row: EvalRow) -> dict[str, Any]:
    objectives = np.asarray(row.objectives)
    return {
        "objective_mean": round(float(objectives.mean()), 3),
        "objective_std": _std(objectives),
        "accuracy_mean": round(float(np.mean([e.final_accuracy for e in row.episodes])), 3),
        "params_added_mean": round(float(np.mean([e.seed_params for e in row.episodes])), 1),
    }


def measure(task: str, episodes: int, seed: int, num_envs: int) -> dict[str, Any]:
    """Every row of the module docstring on ``episodes`` held-out episodes of ``task``."""
    config = EnvConfig(task=task)  # type: ignore[arg-type]
    pool = VectorEnvPool(config, min(num_envs, episodes))
    eval_config = EvalConfig(episodes=episodes, seed=seed)
    seeds = eval_config.episode_seeds()
    started = time.perf_counter()
    rules = rule_rows(pool, eval_config)
    no_growth = next(row for row in rules if row.policy == NO_GROWTH)
    schedules = (no_growth, *fixed_schedule_rows(pool, seeds), *single_seed_rows(pool, seeds))
    best = max(schedules, key=lambda row: row.mean_objective)
    static, widened = architecture_rows(pool, seeds, best.episodes)
    rows = [*rules, *schedules[1:], static, widened]
    if config.varies_per_episode:
        rows.append(play_row(DESCRIPTOR_RULE, pool, seeds, lambda venv, batch: descriptor_rule_actor(venv)))
    table = np.asarray([row.objectives for row in schedules])  # [schedules, episodes]
    winners = table.argmax(axis=0)
    oracle = table.max(axis=0)
    best_values = np.asarray(best.objectives)
    report: dict[str, Any] = {
        "task": task,
        "episodes": episodes,
        "eval_seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": {row.policy: row_summary(row) for row in rows},
        "best_fixed_schedule": best.policy,
        "best_fixed_schedule_objective": {
            "mean": round(float(best_values.mean()), 3),
            "std": _std(best_values),
            "min": round(float(best_values.min()), 3),
            "max": round(float(best_values.max()), 3),
        },
        "episodes_won": dict(Counter(schedules[w].policy for w in winners).most_common()),
        "episodes_where_best_fixed_schedule_wins": int(sum(schedules[w] is best for w in winners)),
        "oracle_objective_mean": round(float(oracle.mean()), 3),
        "oracle_minus_best_fixed": interval((oracle - best_values).tolist()),
        "regret_of_best_fixed_per_episode": [round(float(v), 2) for v in oracle - best_values],
        "winner_per_episode": [schedules[w].policy for w in winners],
        "objectives": {row.policy: [round(v, 3) for v in row.objectives] for row in rows},
    }
    if config.varies_per_episode:
        rule = np.asarray(rows[-1].objectives)
        report["descriptor_rule_minus_best_fixed"] = interval((rule - best_values).tolist())
        report["variants"] = [
            {"widths": list(v.preset.widths), "nonlinear": v.nonlinear} for v in map(draw_variant, seeds)
        ]
    return report


def from_epoch(space: ActionSpace, inner: ActFn, epoch: int) -> ActFn:
    """``inner`` from step ``epoch`` on, WAIT before it: the same schedule germinated later."""
    step = 0

    def act(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        nonlocal step
        actions = inner(obs, masks) if step >= epoch else wait_actions(masks, space)
        step += 1
        return actions

    return act


def prune_on_contribution(space: ActionSpace, layout: ObservationLayout, inner: ActFn, slot: int) -> ActFn:
    """``inner``, except that where it would fossilize the seed in ``slot`` and that seed's measured
    counterfactual contribution is not positive, it prunes the seed instead (WAIT until PRUNE is allowed).

    The closed-loop way to learn whether a seed hurts: try it, read what removing it would cost.
    """
    assert space.slot_head is not None

    def act(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        actions = inner(obs, masks)
        contribution = obs.features[:, layout.slot(slot, "contribution")][:, 0]
        assert masks.slot_by_op is not None
        for i in range(contribution.shape[0]):
            if int(actions[space.op_head][i]) != LifecycleOp.FOSSILIZE or float(contribution[i]) > 0.0:
                continue
            can_prune = bool(masks.heads[space.op_head][i, LifecycleOp.PRUNE]) and bool(
                masks.slot_by_op[i, LifecycleOp.PRUNE, slot]
            )
            actions[space.op_head][i] = int(LifecycleOp.PRUNE if can_prune else LifecycleOp.WAIT)
            actions[space.slot_head][i] = slot
        return actions

    return act


def named_schedule(pool: VectorEnvPool, seeds: Sequence[int], name: str) -> EvalRow:
    """``blueprint@slot_id`` (a single-seed schedule) or ``blueprint`` (``eval``'s grow-every-slot schedule),
    with optional comma-separated modifiers: ``from=EPOCH`` (nothing before that epoch) and, for a
    single seed, ``prune`` (:func:`prune_on_contribution`), e.g. ``attention@r0c0,from=10,prune``."""
    base, *modifiers = name.split(",")
    blueprint_id, _, slot_id = base.partition("@")
    blueprint = BlueprintAction[blueprint_id.upper()]
    slot = pool.config.slot_ids.index(slot_id) if slot_id else None
    start = next((int(m.removeprefix("from=")) for m in modifiers if m.startswith("from=")), 0)
    prune = "prune" in modifiers
    if prune and slot is None:
        raise SystemExit(f"{name!r}: prune needs a single-seed schedule (blueprint@slot)")

    def schedule(venv: VectorEnv, batch: range) -> ActFn:
        del batch
        act = fixed_schedule_actor(venv.action_space, blueprint, slot)
        if prune:
            assert slot is not None
            act = prune_on_contribution(venv.action_space, venv.layout, act, slot)
        return from_epoch(venv.action_space, act, start) if start else act

    label = f"single seed ({blueprint_id} @ {slot_id})" if slot_id else f"fixed schedule ({blueprint_id})"
    suffix = (f", from epoch {start}" if start else "") + (", pruned if it does not contribute" if prune else "")
    return play_row(label + suffix, pool, seeds, schedule)


def versus(task: str, episodes: int, seed: int, num_envs: int, names: Sequence[str]) -> dict[str, Any]:
    """The descriptor rule against the named schedules only, on the same episodes."""
    config = EnvConfig(task=task)  # type: ignore[arg-type]
    if not config.varies_per_episode:
        raise SystemExit(f"--versus needs a varied task; {task!r} does not vary")
    pool = VectorEnvPool(config, min(num_envs, episodes))
    seeds = EvalConfig(episodes=episodes, seed=seed).episode_seeds()
    started = time.perf_counter()
    rule = play_row(DESCRIPTOR_RULE, pool, seeds, lambda venv, batch: descriptor_rule_actor(venv))
    others = [named_schedule(pool, seeds, name) for name in names]
    values = np.asarray(rule.objectives)
    return {
        "task": task,
        "episodes": episodes,
        "eval_seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": {row.policy: row_summary(row) for row in (rule, *others)},
        "descriptor_rule_minus": {
            row.policy: interval((values - np.asarray(row.objectives)).tolist()) for row in others
        },
        "objectives": {row.policy: [round(v, 3) for v in row.objectives] for row in (rule, *others)},
        "variants": [{"widths": list(v.preset.widths), "nonlinear": v.nonlinear} for v in map(draw_variant, seeds)],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-varied", help="task to measure (default: digits-varied)")
    parser.add_argument("--episodes", type=int, default=32, help="held-out episodes per row (default 32)")
    parser.add_argument("--seed", type=int, default=1234, help="evaluation seed (eval's default, 1234)")
    parser.add_argument("--num-envs", type=int, default=8, help="episodes played in lockstep")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--versus", nargs="+", metavar="SCHEDULE", help="only the descriptor rule and these schedules")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.versus:
        report = versus(args.task, args.episodes, args.seed, args.num_envs, args.versus)
    else:
        report = measure(args.task, args.episodes, args.seed, args.num_envs)
    text = json.dumps(report, indent=2, allow_nan=False)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
