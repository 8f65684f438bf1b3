"""``train(config) -> RunResult``: the vectorized PPO training run, start to finish.

One loop, in CleanRL order: set up (env, policy through the registry, agent, buffer,
normalisers, RNGs; or restore all of it from a checkpoint) → for each round: roll out N lockstep
episodes (:func:`~esper.simic.training.rollout.collect_rollout`) → ``agent.update(buffer)`` →
update the observation normaliser → serialise a checkpoint when due → trace one greedy episode when
due (``trace_every``, :mod:`~esper.simic.training.round_traces`) → hand a :class:`RoundRecord` to
the sinks → write the checkpoint atomically. Rounds never depend on
wall-clock or global state outside the run: every random stream derives from ``config.seed``, so
two runs with the same config are identical on CPU, and a run resumed from a checkpoint continues
bit-identically.

Under ``torchrun`` every process runs this same loop on its share of the environments
(:mod:`~esper.simic.training.distributed`); rank 0 alone owns the run directory and reports every
replica's episodes, and a checkpoint holds every replica's random streams.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from esper.simic.agent import ObservationNormalizer, PPOAgent, RewardNormalizer, RolloutBuffer, UpdateMetrics
from esper.simic.env import VectorEnv
from esper.simic.training.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    check_compatible,
    encode_checkpoint,
    policy_header,
    read_checkpoint,
    rebuild_policy,
    write_checkpoint,
)
from esper.simic.training.config import TrainConfig, check_device
from esper.simic.training.distributed import DistributedContext, distributed_context
from esper.simic.training.metrics import (
    EpisodeStats,
    FanOutSink,
    NullSink,
    PhaseTimings,
    RoundRecord,
    RunStart,
    RunSummary,
    TrainingSink,
)
from esper.simic.training.resume import check_resume_config, resume_caveats
from esper.simic.training.rng import (
    SHUFFLE_STREAM,
    TRAIN_RESET_STREAM,
    capture_rng_state,
    derive_seed,
    isolated_global_rngs,
    make_sampler,
    restore_rng_state,
    torch_threads,
)
from esper.simic.training.rollout import RolloutResult, collect_rollout, merge_rollouts, op_count_names
from esper.simic.training.round_traces import RoundTracer
from esper.simic.training.run_dir import RunDirectory, RunDirectoryError, resolve_resume
from esper.tamiyo.policy import PolicyBundle, create_policy


@dataclass(frozen=True, slots=True)
class RunResult:
    """What :func:`train` returns."""

    config: TrainConfig
    """The resolved configuration of the run."""
    rounds_completed: int
    """Rounds completed, earlier (resumed) parts included."""
    history: tuple[RoundRecord, ...]
    """Records of the rounds this call ran."""
    summary: RunSummary
    """End-of-run summary (also written to ``summary.json`` with a run directory)."""
    policy: PolicyBundle
    """The trained policy (on ``config.device``)."""
    checkpoint: Path | None
    """Checkpoint holding the final state: the last one written (None without ``out_dir``), or the
    one resumed from when it already had every round."""


@dataclass(slots=True)
class _Components:
    """Mutable training state that a checkpoint captures (internal to this module)."""

    policy: PolicyBundle
    agent: PPOAgent
    obs_normalizer: ObservationNormalizer
    reward_normalizer: RewardNormalizer
    sampler: torch.Generator
    rounds_completed: int = 0
    env_steps: int = 0


def resolve_device(name: str) -> torch.device:
    """``torch.device`` for ``name``; raises ``ValueError`` if it names an unavailable accelerator or a
    device type the trainer cannot use (:data:`~esper.simic.training.config.DEVICE_TYPES`).

    A bare ``cuda`` means ``cuda:0`` in one process, so every tensor of the run (policy, hosts,
    seeds, task data) reports the same device; a multi-process job moves each rank to
    ``cuda:LOCAL_RANK`` (:func:`~esper.simic.training.distributed.distributed_context`).
    """
    device = check_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available on this machine")
    return device


def _fresh_components(config: TrainConfig, venv: VectorEnv, ctx: DistributedContext) -> _Components:
    device = ctx.device
    policy = create_policy(
        config.policy,
        slot_config=venv.slot_config,
        feature_dim=venv.feature_dim,
        device=device,
        compile_mode=config.compile_mode,
        **config.policy_kwargs,
    )
    check_compatible(
        policy_header(config.policy, policy),
        slot_config=venv.slot_config,
        action_space=venv.action_space,
        feature_dim=venv.feature_dim,
    )
    return _Components(
        policy=policy,
        agent=PPOAgent(
            policy,
            config.ppo,
            generator=torch.Generator().manual_seed(ctx.rank_seed(config.seed, SHUFFLE_STREAM)),
            reduce=ctx.reduce,
        ),
        obs_normalizer=ObservationNormalizer(venv.feature_dim, reduce=ctx.reduce),
        reward_normalizer=RewardNormalizer(venv.num_envs, gamma=config.ppo.gamma, reduce=ctx.reduce),
        sampler=make_sampler(config.seed, ctx.device, rank=ctx.rank),
    )


def _restored_components(
    checkpoint: Mapping[str, Any], config: TrainConfig, venv: VectorEnv, ctx: DistributedContext
) -> _Components:
    device = ctx.device
    header = checkpoint["policy"]
    check_compatible(header, slot_config=venv.slot_config, action_space=venv.action_space, feature_dim=venv.feature_dim)
    policy = rebuild_policy(header, checkpoint["policy_state"], device=device, compile_mode=config.compile_mode)
    parts = _Components(
        policy=policy,
        agent=PPOAgent(policy, config.ppo, generator=torch.Generator(), reduce=ctx.reduce),
        obs_normalizer=ObservationNormalizer(venv.feature_dim, reduce=ctx.reduce),
        reward_normalizer=RewardNormalizer(venv.num_envs, gamma=config.ppo.gamma, reduce=ctx.reduce),
        sampler=make_sampler(config.seed, ctx.device, rank=ctx.rank),
    )
    try:
        parts.agent.load_state_dict(checkpoint["agent_state"])
        parts.obs_normalizer.load_state_dict(checkpoint["normalizers"]["obs"])
        parts.reward_normalizer.load_state_dict(checkpoint["normalizers"]["reward"])
        restore_rng_state(checkpoint["rng"], parts.sampler)
        parts.rounds_completed = int(checkpoint["counters"]["rounds_completed"])
        parts.env_steps = int(checkpoint["counters"]["env_steps"])
        if ctx.world_size > 1:
            _restore_replica(parts, checkpoint["replicas"][ctx.rank])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint state cannot be restored: {type(exc).__name__}: {exc}") from exc
    return parts


def _replica_state(parts: _Components) -> dict[str, Any]:
    """What differs between replicas and a resumed replica needs: its random streams and its
    environments' running discounted returns."""
    return {
        "rng": capture_rng_state(parts.sampler),
        "shuffle": parts.agent.generator.get_state(),
        "discounted_returns": parts.reward_normalizer.discounted_returns.clone(),
    }


def _restore_replica(parts: _Components, state: Mapping[str, Any]) -> None:
    restore_rng_state(state["rng"], parts.sampler)
    parts.agent.generator.set_state(state["shuffle"])
    parts.reward_normalizer.discounted_returns = state["discounted_returns"].clone()


def check_world_size(checkpoint: Mapping[str, Any], path: Path, world_size: int) -> None:
    """Refuse to resume a checkpoint written by another number of processes (its replicas' streams
    cannot be split or merged, so the run could not continue bit-identically)."""
    saved = int(checkpoint.get("world_size", 1))
    if saved != world_size:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by {saved} process(es) and this run has {world_size}; "
            f"resume it with --nproc-per-node {saved}"
        )


def _checkpoint_dict(parts: _Components, config: TrainConfig, replicas: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint; ``replicas`` holds every replica's :func:`_replica_state` (rank 0's alone: one process)."""
    extra = {"replicas": replicas} if len(replicas) > 1 else {}
    return {
        "format_version": FORMAT_VERSION,
        "policy": policy_header(config.policy, parts.policy),
        "policy_state": parts.policy.state_dict(),
        "agent_state": parts.agent.state_dict(),
        "normalizers": {"obs": parts.obs_normalizer.state_dict(), "reward": parts.reward_normalizer.state_dict()},
        "counters": {
            "rounds_completed": parts.rounds_completed,
            "episodes_completed": parts.rounds_completed * config.num_envs,
            "env_steps": parts.env_steps,
        },
        "rng": capture_rng_state(parts.sampler),
        "config": config.to_dict(),
        "world_size": len(replicas),
        **extra,
    }


def _checkpoint_due(config: TrainConfig, rounds_completed: int) -> bool:
    if rounds_completed == config.total_rounds:
        return True
    return config.checkpoint_every > 0 and rounds_completed % config.checkpoint_every == 0


def _run_round(
    parts: _Components, venv: VectorEnv, buffer: RolloutBuffer, config: TrainConfig, ctx: DistributedContext
) -> tuple[RolloutResult, float, UpdateMetrics]:
    """Rollout + update of round ``parts.rounds_completed``; returns (every replica's rollout,
    update seconds, update metrics)."""
    round_index = parts.rounds_completed
    # The global environment index: env i of a round has the same episode whatever the world size.
    seeds = [derive_seed(config.seed, TRAIN_RESET_STREAM, round_index, i) for i in ctx.env_indices(config.num_envs)]
    rollout = collect_rollout(
        venv,
        parts.policy,
        buffer,
        seeds=seeds,
        obs_normalizer=parts.obs_normalizer,
        reward_normalizer=parts.reward_normalizer,
        generator=parts.sampler,
    )
    parts.reward_normalizer.end_round()
    started = time.perf_counter()
    update = parts.agent.update(buffer)
    parts.obs_normalizer.update(rollout.raw_features)
    update_s = time.perf_counter() - started
    if ctx.world_size > 1:  # the round's report covers every replica's episodes
        rollout = merge_rollouts(ctx.gather_objects(replace(rollout, raw_features=rollout.raw_features[:0])))
    parts.rounds_completed += 1
    parts.env_steps += rollout.num_transitions
    return rollout, update_s, update


def train(
    config: TrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    sink: TrainingSink | None = None,
) -> RunResult:
    """Train ``config.policy`` with PPO for ``config.total_rounds`` rounds (or continue a checkpoint).

    Args:
        config: the run; with ``out_dir`` set, the run directory gets the resolved config,
            ``metrics.jsonl``, checkpoints and ``summary.json``, and is locked for the run's life
            (:class:`~esper.simic.training.run_dir.RunDirectory`).
        resume: a checkpoint to continue from, or ``"auto"``: the latest checkpoint in ``out_dir``
            if there is one, else a fresh start. ``config`` must match the checkpoint's run except
            for :data:`~esper.simic.training.config.RESUME_OVERRIDABLE` fields. Training continues
            at the checkpoint's round count up to ``config.total_rounds``; a checkpoint that already
            has them all trains nothing and leaves every file as it was.
        sink: extra observer of the run (progress display, custom logging); default none.

    Raises:
        CheckpointError: unreadable or incompatible checkpoint, or one that cannot be written.
        RunDirectoryError: the run directory is locked by another run, holds another run's files,
            already holds this run's checkpoint on a fresh start, or cannot be written.
        UnknownPolicyError / PolicyLoadError: ``config.policy`` is not usable.
        ValueError: invalid combination (non-trainable policy, unavailable device, ...).
    """
    device = resolve_device(config.device)
    with distributed_context(device, timeout_s=config.dist_timeout_s) as ctx:
        return _train(config, ctx, resume, sink)


def _train(
    config: TrainConfig, ctx: DistributedContext, resume: str | os.PathLike[str] | None, sink: TrainingSink | None
) -> RunResult:
    """:func:`train` inside the job's process group (one process: none)."""
    device = ctx.device
    local_envs = ctx.local_envs(config.num_envs)
    run_dir = None if config.out_dir is None or not ctx.is_main else RunDirectory(config.out_dir)
    resume_path = resolve_resume(resume, config.out_dir)
    resumed_from = None if resume_path is None else (resume_path, _file_identity(resume_path))
    checkpoint = None
    notices: list[str] = []
    if resume_path is not None:
        checkpoint = read_checkpoint(resume_path)
        check_world_size(checkpoint, resume_path, ctx.world_size)
        check_resume_config(checkpoint["config"], config)
        notices += resume_caveats(checkpoint["config"], config)
    observer = sink if sink is not None and ctx.is_main else NullSink()
    sinks: TrainingSink = observer if run_dir is None else FanOutSink(run_dir, observer)
    started = time.perf_counter()
    with torch_threads(config.num_threads), isolated_global_rngs(config.seed, device), ExitStack() as held:
        venv = VectorEnv(config.env, local_envs, device, gamma=config.ppo.gamma, engine=config.engine)
        if checkpoint is None:
            parts = _fresh_components(config, venv, ctx)
        else:
            parts = _restored_components(checkpoint, config, venv, ctx)
        if parts.rounds_completed > config.total_rounds:
            raise CheckpointError(
                f"the checkpoint already has {parts.rounds_completed} rounds, more than the "
                f"{config.total_rounds} this run asks for; raise --rounds/--episodes"
            )
        if resume_path is not None and parts.rounds_completed == config.total_rounds:
            wall_s = time.perf_counter() - started
            return _nothing_to_train(config, parts, resume_path, run_dir, observer, notices, wall_s)
        tracer = RoundTracer(config, None if run_dir is None else run_dir.path)
        if run_dir is not None:
            notices += _open_run_dir(run_dir, config, parts.rounds_completed, resumed_from, ctx)
            held.callback(run_dir.close)
            tracer.drop_after(parts.rounds_completed)
        else:
            ctx.agree(None)
        buffer = RolloutBuffer.for_policy(parts.policy, num_envs=local_envs, num_steps=config.env.episode_length)
        sinks.on_run_start(
            RunStart(
                config.to_dict(),
                parts.rounds_completed,
                config.total_rounds,
                config.num_envs,
                tuple(notices),
                env_steps=parts.env_steps,
            )
        )
        history: list[RoundRecord] = []
        last_checkpoint: Path | None = None
        while parts.rounds_completed < config.total_rounds:
            round_started = time.perf_counter()
            rollout, update_s, update = _run_round(parts, venv, buffer, config, ctx)
            checkpoint_s = 0.0
            payload: bytes | None = None
            if config.out_dir is not None and _checkpoint_due(config, parts.rounds_completed):
                checkpoint_started = time.perf_counter()
                replicas = ctx.gather_objects(_replica_state(parts))
                if run_dir is not None:
                    payload = encode_checkpoint(_checkpoint_dict(parts, config, replicas))
                checkpoint_s = time.perf_counter() - checkpoint_started
            timings = PhaseTimings(
                env_s=rollout.env_s,
                policy_s=rollout.policy_s,
                update_s=update_s,
                checkpoint_s=checkpoint_s,
                total_s=time.perf_counter() - round_started,
            )
            record = _round_record(parts, config, rollout, update, timings)
            history.append(record)
            # Before the round's metrics line: a crash in between redoes the round, and its trace, on resume.
            tracer.after_round(parts.rounds_completed, parts.policy, parts.obs_normalizer)
            # The round's metrics line goes out before its checkpoint lands: a crash in between
            # leaves a line past the last checkpoint, which resume drops and re-records, instead
            # of a checkpoint whose round has no record.
            sinks.on_round(record)
            if payload is not None and run_dir is not None:
                last_checkpoint = _save(payload, parts.rounds_completed, config, run_dir)
        summary = _summary(history, parts, config, time.perf_counter() - started, last_checkpoint, run_dir)
        sinks.on_run_end(summary)
    return RunResult(config, parts.rounds_completed, tuple(history), summary, parts.policy, last_checkpoint)


def _file_identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced or rewritten (inode, device, size, mtime); zeros if missing."""
    stat = path.stat() if path.is_file() else None
    return (0, 0, 0, 0) if stat is None else (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns)


def _open_run_dir(
    run_dir: RunDirectory,
    config: TrainConfig,
    start_round: int,
    resumed_from: tuple[Path, tuple[int, int, int, int]] | None,
    ctx: DistributedContext,
) -> list[str]:
    """Lock and claim ``run_dir`` (:meth:`RunDirectory.open`) on rank 0; returns its notices.

    Every other replica waits in :meth:`DistributedContext.agree` and fails with rank 0's reason
    if it could not claim the directory.

    The checkpoint was read before the lock was taken; if another run replaced it in between
    (two workers started with ``--resume auto`` at once), this run would continue a stale state.
    A checkpoint of another directory brings its run's metrics along
    (:meth:`RunDirectory.adopt_history`).
    """
    try:
        notices = run_dir.open(config.to_dict(), start_round=start_round)
        if resumed_from is not None and _file_identity(resumed_from[0]) != resumed_from[1]:
            run_dir.close()
            raise RunDirectoryError(
                f"checkpoint {str(resumed_from[0])!r} changed while this run was starting (another run wrote it); "
                "start this run again"
            )
        if resumed_from is not None:  # resumed into another directory: it starts with the run's rounds so far
            notices += run_dir.adopt_history(resumed_from[0], config.to_dict(), start_round=start_round)
    except (RunDirectoryError, OSError) as exc:
        ctx.agree(str(exc))  # every replica stops with rank 0's reason
        raise
    ctx.agree(None)
    return notices


def _nothing_to_train(
    config: TrainConfig,
    parts: _Components,
    resume_path: Path,
    run_dir: RunDirectory | None,
    observer: TrainingSink,
    notices: list[str],
    wall_s: float,
) -> RunResult:
    """A resume whose checkpoint already has every round: report the run, write nothing.

    The run directory is neither locked nor touched, so every file keeps its bytes and mtime.
    """
    rows = [] if run_dir is None else run_dir.round_rows(parts.rounds_completed)
    summary = RunSummary.from_rounds(
        rows,
        rounds_completed=parts.rounds_completed,
        episodes_completed=parts.rounds_completed * config.num_envs,
        wall_time_s=wall_s,
        checkpoint=str(resume_path),
    )
    done = f"{str(resume_path)!r} already has all {config.total_rounds} rounds: nothing to train, no file changed"
    observer.on_run_start(
        RunStart(config.to_dict(), parts.rounds_completed, config.total_rounds, config.num_envs, (*notices, done))
    )
    observer.on_run_end(summary)
    return RunResult(config, parts.rounds_completed, (), summary, parts.policy, resume_path)


def _round_record(
    parts: _Components, config: TrainConfig, rollout: RolloutResult, update: UpdateMetrics, timings: PhaseTimings
) -> RoundRecord:
    return RoundRecord(
        round=parts.rounds_completed,
        episodes=parts.rounds_completed * config.num_envs,
        env_steps=rollout.num_transitions,
        episode_stats=EpisodeStats.from_episodes(rollout.episodes),
        invalid_actions=rollout.invalid_actions,
        op_counts=op_count_names(rollout.executed_op_counts),
        head_entropies=rollout.head_entropies,
        update=update.as_dict(),
        timings=timings,
    )


def _save(payload: bytes, rounds_completed: int, config: TrainConfig, run_dir: RunDirectory) -> Path:
    """Write ``checkpoint_last.pt`` (and a numbered copy when asked); returns the rolling path."""
    write_checkpoint(run_dir.last_checkpoint, payload)
    if config.keep_checkpoints:
        write_checkpoint(run_dir.round_checkpoint(rounds_completed), payload)
    return run_dir.last_checkpoint


def _summary(
    history: list[RoundRecord],
    parts: _Components,
    config: TrainConfig,
    wall_s: float,
    checkpoint: Path | None,
    run_dir: RunDirectory | None,
) -> RunSummary:
    """Summary of the whole run: every round in ``metrics.jsonl`` (earlier invocations included);
    without a run directory, only this invocation's rounds are known."""
    rows = [r.to_json() for r in history] if run_dir is None else run_dir.round_rows(parts.rounds_completed)
    return RunSummary.from_rounds(
        rows,
        rounds_completed=parts.rounds_completed,
        episodes_completed=parts.rounds_completed * config.num_envs,
        wall_time_s=wall_s,
        checkpoint=None if checkpoint is None else str(checkpoint),
    )
