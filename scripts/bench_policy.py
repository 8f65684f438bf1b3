"""Benchmark a trainable Tamiyo policy: rollout latency and update cost, printed as JSON.

Measures, per device and network size preset:

* ``get_action_ms``: median latency of one ``get_action`` call (stochastic, inference mode) for
  batches of 1, 4, 16 and 64 environments;
* ``get_action_ops``: ATen ops one such call runs, as ``torch.profiler`` records them (nested ops
  included, e.g. ``aten::linear`` and the ``aten::addmm`` inside it): on CPU at small batches the
  call costs a few microseconds per op, so this count, not FLOPs, is what its latency tracks;
* ``evaluate_fwd_bwd_ms``: median time of ``evaluate_actions`` plus the backward pass of a
  PPO-shaped loss over sequences ``[B, T]`` = ``[4, 40]`` and ``[16, 150]``.

CUDA timings synchronise before and after each call. Usage::

    uv run python scripts/bench_policy.py                 # CPU, plus CUDA when available
    uv run python scripts/bench_policy.py --device cuda --compile default
    uv run python scripts/bench_policy.py --quick         # tiny smoke run
    uv run python scripts/bench_policy.py --device cpu --sizes default --threads 1   # rollout latency
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from esper.tamiyo.contract import (
    ActionMasks,
    AlphaMode,
    Observation,
    SeedStage,
    SlotConfig,
    SlotState,
    compute_batch_masks,
    op_conditioned_slot_mask,
)
from esper.tamiyo.policy import PolicyBundle, create_policy

BATCHES = (1, 4, 16, 64)
SEQUENCES = ((4, 40), (16, 150))
QUICK_BATCHES = (1, 4)
QUICK_SEQUENCES = ((2, 8),)
STAGES = (SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING, SeedStage.FOSSILIZED)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="lstm", help="registered trainable policy type (default: lstm)")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = CPU, plus CUDA when available"
    )
    parser.add_argument("--sizes", default="default,reference", help="comma-separated network presets")
    parser.add_argument("--compile", default="off", help="compile mode passed to create_policy (default: off)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 30, quick 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs and the weights")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice); 1 is steadier"
    )
    parser.add_argument("--quick", action="store_true", help="tiny run: default size, small batches, 2 repeats")
    return parser.parse_args(argv)


def devices(choice: str) -> list[torch.device]:
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda given but CUDA is not available")
        return [torch.device("cuda")]
    if choice == "cpu" or not torch.cuda.is_available():
        return [torch.device("cpu")]
    return [torch.device("cpu"), torch.device("cuda")]


def synthetic_step(bundle: PolicyBundle, batch: int, rng: random.Random) -> tuple[Observation, ActionMasks]:
    """Random features and contract masks over varied slot states for ``batch`` environments."""
    slots = bundle.slot_config
    states = [
        {
            s: None
            if rng.random() < 0.4
            else SlotState(rng.choice(STAGES), rng.randint(0, 8), rng.choice(list(AlphaMode)))
            for s in slots.slot_ids
        }
        for _ in range(batch)
    ]
    masks = compute_batch_masks(states, slot_config=slots, topology="cnn")
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    features = torch.randn(batch, bundle.feature_dim, generator=generator)
    indices = torch.tensor([[-1 if st[s] is None else rng.randint(1, 7) for s in slots.slot_ids] for st in states])
    return Observation(features, indices).to(bundle.device), masks.to(bundle.device)


def synthetic_sequence(
    bundle: PolicyBundle, batch: int, steps: int, rng: random.Random
) -> tuple[Observation, dict[str, torch.Tensor], ActionMasks]:
    """A ``[B, T]`` batch as a rollout buffer would hold it (valid actions, op-conditioned slot masks)."""
    obs, masks = synthetic_step(bundle, batch * steps, rng)
    actions = bundle.get_action(obs, masks).actions
    heads = dict(masks.heads)
    heads["slot"] = op_conditioned_slot_mask(masks.slot_by_op, actions["op"])  # type: ignore[arg-type]
    obs_seq = Observation(obs.features.view(batch, steps, -1), obs.blueprint_indices.view(batch, steps, -1))
    actions_seq = {h: a.clone().view(batch, steps) for h, a in actions.items()}
    return obs_seq, actions_seq, ActionMasks({h: m.view(batch, steps, -1) for h, m in heads.items()})


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(timings), 3)


def count_ops(fn: Callable[[], object]) -> int:
    """ATen ops (``aten::*`` profiler events, nested ones included) that one call of ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile  # imported here: only this metric needs it

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def bench_one(args: argparse.Namespace, device: torch.device, preset: str, repeats: int) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    bundle = create_policy(
        args.policy, slot_config=SlotConfig(), device=device, compile_mode=args.compile, preset=preset
    )
    parameters = list(bundle.parameters())
    get_action_ms, get_action_ops = {}, {}
    for batch in QUICK_BATCHES if args.quick else BATCHES:
        obs, masks = synthetic_step(bundle, batch, rng)
        hidden = bundle.initial_hidden(batch)
        call = functools.partial(bundle.get_action, obs, masks, hidden)
        get_action_ms[str(batch)] = median_ms(call, device, repeats)
        get_action_ops[str(batch)] = count_ops(call)

    evaluate_ms = {}
    for batch, steps in QUICK_SEQUENCES if args.quick else SEQUENCES:
        obs_seq, actions, stored = synthetic_sequence(bundle, batch, steps, rng)

        def update(
            obs_seq: Observation = obs_seq, actions: dict[str, torch.Tensor] = actions, stored: ActionMasks = stored
        ) -> None:
            result = bundle.evaluate_actions(obs_seq, actions, stored)
            loss = -sum(lp.sum() for lp in result.log_probs.values()) + result.value.pow(2).mean()
            if result.q_value is not None:
                loss = loss + result.q_value.pow(2).mean()
            loss.backward()
            for p in parameters:
                p.grad = None

        evaluate_ms[f"{batch}x{steps}"] = median_ms(update, device, max(1, repeats // 3))

    return {
        "device": str(device),
        "size": preset,
        "policy_config": dict(bundle.policy_config),
        "num_parameters": sum(p.numel() for p in parameters),
        "get_action_ms": get_action_ms,
        "get_action_ops": get_action_ops,
        "evaluate_fwd_bwd_ms": evaluate_ms,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 30)
    presets = ["default"] if args.quick else [p.strip() for p in args.sizes.split(",") if p.strip()]
    results = [bench_one(args, device, preset, repeats) for device in devices(args.device) for preset in presets]
    report = {
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "policy": args.policy,
        "compile": args.compile,
        "repeats": repeats,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
