"""Benchmark the morphogenetic environment against a plain PyTorch training loop; prints JSON.

For each workload and each environment count (1, 4), one episode of a ``VectorEnv`` is driven by a
scripted policy (germinate a seed whenever the masks allow it, fossilize every seed that reaches
HOLDING), and every ``step`` call is timed. The step time is split into:

* ``train_ms``: host training (the host engine's ``train``: host + seeds, one fused update);
* ``validate_ms``: validation with the counterfactual configurations (the engine's ``validate``);
* ``other_ms``: everything else the environment adds (action checks and execution, lifecycle
  tick, governor, signals, reward, observation and masks, stacking across environments).

Both phases are timed by wrapping the vector environment's host engine (its ``train`` and ``validate``).
Every configuration runs with each host engine of ``--engines`` (``loop``: one environment after
another; ``batched``: hosts of one shape stacked, one backward and one update for all), side by side.

Workloads (``--hosts``), one per host:

* ``mlp``, ``cnn``: the impaired mlp and cnn hosts on ``digits`` (the default config);
* ``cnn-cifar10``: the normal cnn on ``cifar10``, i.e. the field-sized 32/64/128-channel CIFAR CNN
  with crop + flip augmentation. Given ``--cifar-dir`` it reads the real batches; without it, it
  writes random images in the CIFAR-10 format (``--cifar-per-batch`` × 5 training, ``--cifar-val``
  validation images) to a temporary folder, and the JSON's ``data`` says so;
* ``transformer``: the impaired transformer on ``text`` (the generated default corpus).

The baseline trains the *same* host and the same seed modules (same blueprints, present in the
same epochs as in environment 0 of the episode, at alpha 1) for the same number of epochs with a
plain loop: minibatch SGD with the same optimisers and clipping, then one validation forward per
epoch, no lifecycle and no counterfactuals; it trains on the same samples per epoch as the
environment (``epoch_samples`` for text) and applies the task's augmentation (cifar10).
``overhead_ratio`` is environment milliseconds per environment step divided by baseline
milliseconds per epoch (target: at most 1.0); ``batched_speedup`` is the loop engine's step time
divided by the batched one's. Target: ``other_fraction`` (other / step) at most 0.15.

Usage::

    uv run python scripts/bench_env.py            # 40-epoch episodes, fastest of 3 runs each
    uv run python scripts/bench_env.py --quick    # 8-epoch episodes, one run each
    uv run python scripts/bench_env.py --hosts mlp --num-envs 1 4 16 --engines loop batched
    uv run python scripts/bench_env.py --hosts cnn-cifar10 --cifar-dir ~/data/cifar-10-batches-py
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from esper.simic.env import (
    EnvConfig,
    HostNetwork,
    TaskData,
    VectorEnv,
    build_blueprint,
    build_host,
    host_preset,
    load_task,
)
from esper.simic.env.datasets import write_cifar10_batches
from esper.simic.env.engines import HostEngine
from esper.tamiyo.contract import (
    ACTIVE_STAGES,
    HEAD_NAMES,
    ActionMasks,
    ActionSpace,
    AlphaTargetAction,
    BlueprintAction,
    GerminationStyle,
    LifecycleOp,
    TempoAction,
    parse_slot_id,
)

#: Blueprint the scripted policy germinates, per topology (a mid-sized one of each family).
SCRIPTED_BLUEPRINT: Mapping[str, BlueprintAction] = {
    "mlp": BlueprintAction.MLP,
    "cnn": BlueprintAction.CONV_LIGHT,
    "transformer": BlueprintAction.MLP,
}


@dataclass(frozen=True)
class Workload:
    """One benchmarked host on its task."""

    name: str
    task: str
    host: str
    impaired: bool

    def config(self, episode_length: int, data_dir: str | None) -> EnvConfig:
        return EnvConfig(
            task=self.task,  # type: ignore[arg-type]
            host=self.host,  # type: ignore[arg-type]
            impaired=self.impaired,
            episode_length=episode_length,
            data_dir=data_dir,
        )


WORKLOADS: Mapping[str, Workload] = {
    w.name: w
    for w in (
        Workload("mlp", "digits", "mlp", True),
        Workload("cnn", "digits", "cnn", True),
        Workload("cnn-cifar10", "cifar10", "cnn", False),
        Workload("transformer", "text", "transformer", True),
    )
}

T = TypeVar("T")


@dataclass
class PhaseClock:
    """Seconds spent in the two timed phases since the last :meth:`clear`."""

    train_s: float = 0.0
    validate_s: float = 0.0

    def clear(self) -> None:
        self.train_s = self.validate_s = 0.0


def _timed(fn: Callable[..., T], add: Callable[[float], None]) -> Callable[..., T]:
    def wrapper(*args: Any, **kwargs: Any) -> T:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            add(time.perf_counter() - start)

    return wrapper


@contextmanager
def timed_phases(vec: VectorEnv, clock: PhaseClock) -> Iterator[None]:
    """Wrap ``vec``'s host engine so its training and validation add to ``clock``."""

    def add_train(s: float) -> None:
        clock.train_s += s

    def add_validate(s: float) -> None:
        clock.validate_s += s

    engine = vec.engine
    vec.engine = TimedEngine(engine, add_train, add_validate)
    try:
        yield
    finally:
        vec.engine = engine


class TimedEngine:
    """A host engine whose ``train`` and ``validate`` calls add their seconds to a clock."""

    def __init__(self, inner: HostEngine, add_train: Callable[[float], None], add_validate: Callable[[float], None]):
        self.name = inner.name
        self.train = _timed(inner.train, add_train)
        self.validate = _timed(inner.validate, add_validate)


def scripted_actions(masks: ActionMasks, space: ActionSpace, blueprint: BlueprintAction) -> dict[str, torch.Tensor]:
    """Germinate ``blueprint`` in the first slot that allows it, else fossilize, else WAIT (per env)."""
    assert masks.slot_by_op is not None
    num_envs = masks.slot_by_op.shape[0]
    actions = {h: space.canonical_action(h, masks.heads[h]) for h in HEAD_NAMES}
    for i in range(num_envs):
        for op in (LifecycleOp.GERMINATE, LifecycleOp.FOSSILIZE):
            slots = masks.slot_by_op[i, op].nonzero()
            if bool(masks.heads["op"][i, op]) and slots.numel() > 0:
                actions["op"][i], actions["slot"][i] = int(op), int(slots[0])
                break
        else:
            actions["op"][i] = int(LifecycleOp.WAIT)
    actions["blueprint"][:] = int(blueprint)
    actions["style"][:] = int(GerminationStyle.LINEAR_ADD)
    actions["tempo"][:] = int(TempoAction.FAST)
    actions["alpha_target"][:] = int(AlphaTargetAction.FULL)
    return actions


@dataclass(frozen=True)
class SeedSchedule:
    """Which seeds trained in each epoch of environment 0: ``epochs[e]`` = ``((block, blueprint), ...)``."""

    epochs: tuple[tuple[tuple[int, int], ...], ...]


def run_env(
    config: EnvConfig, num_envs: int, data: TaskData, seed: int, engine: str = "loop"
) -> tuple[dict[str, float], SeedSchedule]:
    """One timed episode of ``num_envs`` environments; returns per-env-step milliseconds and env 0's seeds."""
    vec = VectorEnv(config, num_envs, data=data, engine=engine)
    blueprint = SCRIPTED_BLUEPRINT[config.topology]
    blocks = [parse_slot_id(s)[1] for s in config.slot_ids]  # slot r0c{i} follows host block i
    clock = PhaseClock()
    schedule: list[tuple[tuple[int, int], ...]] = []
    total_s, env_steps, vector_steps, germinated = 0.0, 0, 0, 0
    with timed_phases(vec, clock):
        result: Any = vec.reset([seed + i for i in range(num_envs)])
        clock.clear()
        while True:
            actions = scripted_actions(result.masks, vec.action_space, blueprint)
            start = time.perf_counter()
            result = vec.step(actions)
            total_s += time.perf_counter() - start
            vector_steps += 1
            env_steps += int(result.active.sum())
            germinated += int(((result.executed_op == LifecycleOp.GERMINATE) & result.active).sum())
            model = vec.envs[0].model
            assert model is not None
            if bool(result.active[0]):
                schedule.append(
                    tuple(
                        (blocks[k], int(s.blueprint))
                        for k, s in enumerate(model.all_slots())
                        if s.occupied and s.stage in ACTIVE_STAGES and s.blueprint is not None
                    )
                )
            if not bool((~(result.terminated | result.truncated) & result.active).any()):
                break
    per_step = 1000.0 / env_steps
    train_ms, validate_ms, total_ms = clock.train_s * per_step, clock.validate_s * per_step, total_s * per_step
    other_ms = total_ms - train_ms - validate_ms
    timing = {
        "env_steps": env_steps,
        "vector_steps": vector_steps,
        "seeds_germinated": germinated,
        "step_ms": total_ms,
        "train_ms": train_ms,
        "validate_ms": validate_ms,
        "other_ms": other_ms,
        "other_fraction": other_ms / total_ms,
        "vector_step_ms": 1000.0 * total_s / vector_steps,
    }
    return timing, SeedSchedule(tuple(schedule))


class PlainNet(nn.Module):
    """Host blocks with fixed seed modules after some of them (``h = seed(h)``: ADD at alpha 1)."""

    def __init__(self, host: HostNetwork, seeds: Mapping[int, nn.Module]) -> None:
        super().__init__()
        self.host = host
        self.seeds = nn.ModuleDict({str(k): m for k, m in seeds.items()})
        self.enabled: frozenset[int] = frozenset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, block in enumerate(self.host.blocks):
            h = block(h)
            if i in self.enabled:
                h = self.seeds[str(i)](h)
        out: torch.Tensor = self.host.head(h)
        return out


def plain_loop(config: EnvConfig, data: TaskData, seed: int, schedule: SeedSchedule) -> dict[str, float]:
    """Train host + scheduled seeds with a plain loop for ``len(schedule.epochs)`` epochs; ms per epoch."""
    generator = torch.Generator().manual_seed(seed)
    host = build_host(
        config.host,
        impaired=config.impaired,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        generator=generator,
        preset=host_preset(config.task, config.host, config.impaired),
    )
    wanted = {block: bp for epoch in schedule.epochs for block, bp in epoch}
    seeds = {
        block: build_blueprint(config.topology, bp, host.slot_shapes[block], generator) for block, bp in wanted.items()
    }
    net = PlainNet(host, seeds)
    host_cfg, seed_cfg = config.host_training, config.seed_training
    host_opt = torch.optim.SGD(
        host.parameters(), lr=host_cfg.lr, momentum=host_cfg.momentum, weight_decay=host_cfg.weight_decay
    )
    seed_opts = {
        k: torch.optim.SGD(m.parameters(), lr=seed_cfg.lr, momentum=seed_cfg.momentum) for k, m in seeds.items()
    }
    n, size = data.train_x.shape[0], host_cfg.batch_size
    train_s = validate_s = 0.0
    for enabled in schedule.epochs:
        net.enabled = frozenset(block for block, _ in enabled)
        opts = [host_opt, *(seed_opts[k] for k in net.enabled)]
        start = time.perf_counter()
        net.train()
        order = torch.randperm(n, generator=generator)[: data.epoch_samples]
        x_all, y_all = data.train_x[order], data.train_y[order]
        for b in range(max(order.numel() // size, 1)):
            xb, yb = x_all[b * size : (b + 1) * size], y_all[b * size : (b + 1) * size]
            if data.augmentation is not None:
                xb = data.augmentation(xb, generator)
            loss = F.cross_entropy(net(xb).flatten(0, -2), yb.flatten())
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                max_norm = host_cfg.max_grad_norm if opt is host_opt else seed_cfg.max_grad_norm
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], max_norm)
                opt.step()
        mid = time.perf_counter()
        net.eval()
        with torch.inference_mode():
            correct = 0
            chunk = host_cfg.val_batch_size
            for s in range(0, data.val_x.shape[0], chunk):
                logits = net(data.val_x[s : s + chunk])
                F.cross_entropy(logits.flatten(0, -2), data.val_y[s : s + chunk].flatten())
                correct += int((logits.argmax(dim=-1) == data.val_y[s : s + chunk]).sum())
        end = time.perf_counter()
        train_s += mid - start
        validate_s += end - mid
    epochs = len(schedule.epochs)
    return {
        "epochs": epochs,
        "epoch_ms": 1000.0 * (train_s + validate_s) / epochs,
        "train_ms": 1000.0 * train_s / epochs,
        "validate_ms": 1000.0 * validate_s / epochs,
    }


def bench(
    config: EnvConfig, num_envs: int, data: TaskData, seed: int, repeats: int, engines: Sequence[str]
) -> dict[str, Any]:
    """Alternate ``repeats`` environment episodes (one per engine) and baseline runs; keep the fastest of each.

    On a shared machine the minimum is the estimate least disturbed by other processes.
    """
    env_runs: dict[str, list[dict[str, float]]] = {engine: [] for engine in engines}
    plain_runs = []
    for _ in range(repeats):
        for engine in engines:
            env_timing, schedule = run_env(config, num_envs, data, seed, engine)
            env_runs[engine].append(env_timing)
        plain_runs.append(plain_loop(config, data, seed, schedule))
    plain = min(plain_runs, key=lambda r: r["epoch_ms"])
    by_engine = {}
    for engine, runs in env_runs.items():
        env_timing = min(runs, key=lambda r: r["step_ms"])
        by_engine[engine] = {
            "env": env_timing,
            "overhead_ratio": env_timing["step_ms"] / plain["epoch_ms"],
            "other_within_target": env_timing["other_fraction"] <= 0.15,
        }
    report = {
        "host": config.host,
        "task": config.task,
        "impaired": config.impaired,
        "num_envs": num_envs,
        "episode_length": config.episode_length,
        "repeats": repeats,
        "plain": plain,
        "engines": by_engine,
    }
    if "loop" in by_engine and "batched" in by_engine:
        report["batched_speedup"] = by_engine["loop"]["env"]["step_ms"] / by_engine["batched"]["env"]["step_ms"]
    return report


def cifar_source(cifar_dir: str | None, scratch: Path, per_batch: int, num_val: int, seed: int) -> tuple[str, str]:
    """The CIFAR-10 folder to read and how the JSON describes it: ``cifar_dir``, else generated batches."""
    if cifar_dir is not None:
        return cifar_dir, f"CIFAR-10 batches read from {cifar_dir}"
    root = write_cifar10_batches(scratch / "cifar10", per_batch=per_batch, num_val=num_val, seed=seed)
    return str(root), (
        f"generated: random images in the CIFAR-10 format, {5 * per_batch} train / {num_val} validation "
        "(no --cifar-dir given; timing only, the accuracy means nothing)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8-epoch episodes and one repeat")
    parser.add_argument("--episode-length", type=int, default=40, help="epochs per episode (default 40)")
    parser.add_argument("--hosts", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS), help="workloads")
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 4])
    parser.add_argument(
        "--engines", nargs="+", default=["loop", "batched"], choices=["loop", "batched"], help="host engines to time"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration, fastest kept (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cifar-dir", help="CIFAR-10 python batches for cnn-cifar10 (default: generated ones)")
    parser.add_argument("--cifar-per-batch", type=int, default=100, help="generated images per training batch file")
    parser.add_argument("--cifar-val", type=int, default=200, help="generated validation images")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    episode_length, repeats = (8, 1) if args.quick else (args.episode_length, args.repeats)
    results: list[dict[str, Any]] = []
    data_sources: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for workload in (WORKLOADS[name] for name in args.hosts):
            data_dir = None
            if workload.task == "cifar10":
                data_dir, data_sources[workload.name] = cifar_source(
                    args.cifar_dir, Path(scratch), args.cifar_per_batch, args.cifar_val, args.seed
                )
            data = load_task(workload.config(episode_length, data_dir))
            # Warm-up: first-use costs (lazy imports, kernel selection) must not land in the first timing.
            run_env(workload.config(2, data_dir), 1, data, args.seed)
            config = workload.config(episode_length, data_dir)
            results += [
                {"workload": workload.name, **bench(config, n, data, args.seed, repeats, args.engines)}
                for n in args.num_envs
            ]
    report = {
        "benchmark": "bench_env",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": args.threads,
        "data": data_sources,
        "units": "milliseconds per environment step (env) / per epoch (plain); fastest of `repeats` runs",
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
