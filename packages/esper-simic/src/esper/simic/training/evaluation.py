"""Side-by-side evaluation: a checkpoint's policy against the baselines a reviewer asks for.

Every policy plays the *same* episodes (same reset seeds, drawn from an evaluation stream that
never overlaps the training seeds), so differences are paired, not luck of the draw. Rows:

- the learned policy, deterministic (greedy) and stochastic (sampled with a generator derived
  from ``EvalConfig.seed``, so the row is reproducible); it sees observations normalised with the
  checkpoint's frozen statistics, exactly as in training;
- the heuristic (raw observations: its thresholds are in raw units), no growth (always WAIT) and a
  random valid policy;
- the costly baselines (``EvalConfig.costly_baselines``): the best fixed schedule over the
  topology's blueprints, the learned policy's own most common action sequence replayed open loop,
  the learned policy's final network trained statically from epoch 0, and the host widened to the
  learned network's parameter count (``baselines.py`` says what each answers).

The rule rows and the fixed schedules depend on no checkpoint: every row plays from the episode
seeds and its own generators, never from the global RNG that the rows before it consumed, so a
study plays them once (:class:`BaselineRows`) and passes them to every seed's :func:`evaluate`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from esper.simic.agent import ObservationNormalizer, PPOConfig
from esper.simic.checks import check_int
from esper.simic.env import EnvConfig, EpisodeSummary, VectorEnv
from esper.simic.env.architecture import FixedArchitecture
from esper.simic.env.engines import ENGINE_NAMES, EngineName
from esper.simic.env.rewards import DEFAULT_GAMMA
from esper.simic.env.variants import episode_preset
from esper.simic.training.baselines import (
    FixedArchitectureEnvs,
    HostShape,
    RandomActor,
    charge_host_growth,
    fixed_schedule_actor,
    no_growth_actor,
    open_loop_actor,
    static_architectures,
    widened_architectures,
)
from esper.simic.training.checkpoint import (
    CheckpointError,
    check_compatible,
    confirm_data_dir,
    read_checkpoint,
    rebuild_policy,
)
from esper.simic.training.config import check_device, check_sizes
from esper.simic.training.dataclass_io import ConfigKeyError, from_plain, to_plain
from esper.simic.training.eval_report import EvalReport, EvalRow
from esper.simic.training.rng import (
    EVAL_RANDOM_STREAM,
    EVAL_RESET_STREAM,
    EVAL_SAMPLER_STREAM,
    derive_seed,
    isolated_global_rngs,
    torch_threads,
)
from esper.simic.training.rollout import ActFn, PolicyActor, play_round
from esper.simic.training.traces import TraceRecorder, modal_sequence
from esper.simic.training.vectorized import resolve_device
from esper.tamiyo.contract import BlueprintAction, topology_blueprints
from esper.tamiyo.policy import PolicyBundle, create_policy

HEURISTIC = "heuristic"
NO_GROWTH = "no-growth (WAIT)"
RANDOM = "random valid policy"
STATIC = "learned architecture, static from epoch 0"
WIDENED = "widened host, same params"
OPEN_LOOP = "learned script, open loop"
STOCHASTIC_SUFFIX = ", sampled"

MAX_EVAL_EPISODES = 10_000
"""Most episodes per policy: every row keeps each episode's summary and step-by-step trace in memory until
the report and traces.jsonl are written, and paired differences over 10,000 episodes are already far more
precise than the training seeds they compare."""

#: ``make_actor(venv, episode_indices)``: the act function of one batch of episodes (indices into the seeds).
ActorFactory = Callable[[VectorEnv, range], ActFn]


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """How many episodes to play per policy, and on what."""

    episodes: int = 8
    """Episodes per policy; every policy plays the same episodes (same reset seeds). At most 10,000
    (MAX_EVAL_EPISODES)."""
    num_envs: int = 4
    """Environments stepped in lockstep while evaluating (the sampled rows depend on it: one generator per batch;
    at most 4096: MAX_NUM_ENVS)."""
    seed: int = 1234
    """Seed of the evaluation episodes and of the sampled rows' generators (streams separate from training's)."""
    device: str = "cpu"
    """Torch device of the evaluated policy and of every environment's host, seeds and task data ("cpu",
    "cuda", "cuda:1", "mps")."""
    num_threads: int | None = 1
    """torch CPU threads while evaluating (None: torch's default; at most 1024: MAX_NUM_THREADS)."""
    engine: EngineName = "auto"
    """How the environments' host epochs train ("loop", "batched" or "auto"; see the training option)."""
    costly_baselines: bool = True
    """Also play the costly baselines: a fixed schedule per blueprint, the learned final network trained
    statically, and the widened host (``eval`` only)."""

    def __post_init__(self) -> None:
        check_int("episodes", self.episodes, 1, MAX_EVAL_EPISODES)
        check_sizes(self.num_envs, self.num_threads)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        check_device(self.device)
        if self.engine not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of {list(ENGINE_NAMES)}")
        if not isinstance(self.costly_baselines, bool):
            raise TypeError(f"costly_baselines must be a bool, got {self.costly_baselines!r}")

    def episode_seeds(self) -> tuple[int, ...]:
        """Reset seed of each evaluation episode."""
        return tuple(derive_seed(self.seed, EVAL_RESET_STREAM, i) for i in range(self.episodes))

    def sampling_seed(self, first_episode: int) -> int:
        """Seed of the sampling generator of the batch that starts at episode ``first_episode``."""
        return derive_seed(self.seed, EVAL_SAMPLER_STREAM, first_episode)

    def random_seed(self, episode: int) -> int:
        """Seed of the random baseline's generator in episode ``episode``."""
        return derive_seed(self.seed, EVAL_RANDOM_STREAM, episode)


class VectorEnvPool:
    """Vector envs of one config by batch size, built on first use (the last batch may be smaller).

    Args:
        config: environment config of every env.
        batch_size: episodes played in lockstep per batch.
        gamma: discount of the reward (a checkpoint's ``ppo.gamma``).
        device: where every env's host, seeds and task data live (the evaluated policy's device).
    """

    def __init__(
        self,
        config: EnvConfig,
        batch_size: int,
        *,
        gamma: float = DEFAULT_GAMMA,
        device: torch.device | str = "cpu",
        engine: str = "auto",
    ) -> None:
        self.config = config
        self.batch_size = batch_size
        self.gamma = gamma
        self.device = torch.device(device)
        self.engine = engine
        self._envs: dict[int, VectorEnv] = {}

    def get(self, num_envs: int) -> VectorEnv:
        if num_envs not in self._envs:
            self._envs[num_envs] = VectorEnv(self.config, num_envs, self.device, gamma=self.gamma, engine=self.engine)
        return self._envs[num_envs]

    def batches(self, num_episodes: int) -> list[range]:
        """Episode indices of each lockstep batch."""
        return [range(i, min(i + self.batch_size, num_episodes)) for i in range(0, num_episodes, self.batch_size)]

    def host_shape(self, seed: int) -> HostShape:
        """The host of the episode reset with ``seed``: topology, width preset, input shape and classes of the task."""
        data = self.get(self.batch_size).envs[0].data
        return HostShape(self.config.host, episode_preset(self.config, seed), data.input_shape, data.num_classes)


def play_episodes(
    pool: VectorEnvPool,
    seeds: Sequence[int],
    make_actor: ActorFactory,
    *,
    architectures: Sequence[FixedArchitecture] | None = None,
    recorder: TraceRecorder | None = None,
) -> tuple[EpisodeSummary, ...]:
    """Play one episode per seed in lockstep batches; ``architectures[i]`` (if given) is built at episode i's reset.

    ``recorder`` (if given) traces every step.
    """
    episodes: list[EpisodeSummary] = []
    for batch in pool.batches(len(seeds)):
        venv = pool.get(len(batch))
        envs = venv if architectures is None else FixedArchitectureEnvs(venv, architectures[batch.start : batch.stop])
        act, batch_seeds = make_actor(venv, batch), seeds[batch.start : batch.stop]
        if recorder is None:
            episodes += play_round(envs, act, batch_seeds).episodes
        else:
            episodes += play_round(
                envs, recorder.watch(act, batch_seeds), batch_seeds, on_step=recorder.on_step
            ).episodes
    return tuple(episodes)


def play_row(
    policy: str,
    pool: VectorEnvPool,
    seeds: Sequence[int],
    make_actor: ActorFactory,
    *,
    architectures: Sequence[FixedArchitecture] | None = None,
) -> EvalRow:
    """:func:`play_episodes` as the evaluation row ``policy``, with the trace of every episode."""
    recorder = TraceRecorder(pool.get(pool.batch_size).action_space)
    episodes = play_episodes(pool, seeds, make_actor, architectures=architectures, recorder=recorder)
    return EvalRow(policy, episodes, traces=recorder.episodes)


def heuristic_policy(venv: VectorEnv) -> PolicyBundle:
    """The rule-based bundle for ``venv``'s slots and topology."""
    return create_policy(HEURISTIC, slot_config=venv.slot_config, feature_dim=venv.feature_dim, topology=venv.topology)


def _heuristic_actor(venv: VectorEnv, batch: range) -> ActFn:
    return PolicyActor(heuristic_policy(venv), len(batch), deterministic=True)


def _no_growth(venv: VectorEnv, batch: range) -> ActFn:
    del batch
    return no_growth_actor(venv.action_space)


def rule_rows(pool: VectorEnvPool, config: EvalConfig) -> tuple[EvalRow, ...]:
    """The cheap baselines: heuristic, no growth and the random valid policy."""
    seeds = config.episode_seeds()

    def random_actor(venv: VectorEnv, batch: range) -> ActFn:
        return RandomActor(venv.action_space, [torch.Generator().manual_seed(config.random_seed(i)) for i in batch])

    return (
        play_row(HEURISTIC, pool, seeds, _heuristic_actor),
        play_row(NO_GROWTH, pool, seeds, _no_growth),
        play_row(RANDOM, pool, seeds, random_actor),
    )


def fixed_schedule_rows(pool: VectorEnvPool, seeds: Sequence[int]) -> tuple[EvalRow, ...]:
    """One fixed schedule per blueprint of the host's topology (``fixed_schedule_actor``)."""
    rows = []
    for blueprint in topology_blueprints(pool.config.topology):

        def schedule(venv: VectorEnv, batch: range, bp: BlueprintAction = blueprint) -> ActFn:
            del batch
            return fixed_schedule_actor(venv.action_space, bp)

        rows.append(play_row(f"fixed schedule ({blueprint.blueprint_id})", pool, seeds, schedule))
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class BaselineRows:
    """The rows no checkpoint changes, played once for every checkpoint evaluated on the same episodes.

    Kept with what they were played on, so :func:`evaluate` refuses them for another environment,
    discount or evaluation config instead of reporting another benchmark's baselines.
    """

    rules: tuple[EvalRow, ...]
    """Heuristic, no growth and the random valid policy (:func:`rule_rows`)."""
    fixed_schedules: tuple[EvalRow, ...]
    """One fixed schedule per blueprint (:func:`fixed_schedule_rows`); empty without the costly baselines."""
    env: Mapping[str, Any]
    """The environment config they were played on (plain)."""
    gamma: float
    """The discount of their returns."""
    config: EvalConfig
    """The evaluation config they were played with."""


def baseline_rows(pool: VectorEnvPool, config: EvalConfig) -> BaselineRows:
    """Play the rule rows, and the fixed schedules if ``config.costly_baselines``, on ``pool``."""
    rules = rule_rows(pool, config)
    schedules = fixed_schedule_rows(pool, config.episode_seeds()) if config.costly_baselines else ()
    return BaselineRows(rules, schedules, to_plain(pool.config), pool.gamma, config)


def best_fixed_schedule(rows: Sequence[EvalRow]) -> EvalRow:
    """The schedule with the highest mean objective, as the row ``fixed schedule (best: <blueprint>)``."""
    best = max(rows, key=lambda row: row.mean_objective)
    blueprint = best.policy.removeprefix("fixed schedule (").removesuffix(")")
    return EvalRow(f"fixed schedule (best: {blueprint})", best.episodes, traces=best.traces)


def open_loop_row(pool: VectorEnvPool, seeds: Sequence[int], learned: EvalRow) -> EvalRow:
    """The learned row's most common action sequence (:func:`modal_sequence` of its traces), replayed
    blind in every episode (:func:`open_loop_actor`)."""
    script = modal_sequence([trace.actions for trace in learned.traces])

    def replay(venv: VectorEnv, batch: range) -> ActFn:
        del batch
        return open_loop_actor(venv.action_space, script)

    return play_row(OPEN_LOOP, pool, seeds, replay)


def architecture_rows(
    pool: VectorEnvPool, seeds: Sequence[int], learned: Sequence[EpisodeSummary]
) -> tuple[EvalRow, ...]:
    """The learned final network trained statically from epoch 0, and the host widened to its size."""
    static = play_row(STATIC, pool, seeds, _no_growth, architectures=static_architectures(learned))
    hosts = [pool.host_shape(seed) for seed in seeds]
    widened = play_row(WIDENED, pool, seeds, _no_growth, architectures=widened_architectures(learned, hosts))
    base = [host.num_params for host in hosts]
    paired = tuple(zip(widened.episodes, base, strict=True))
    charged = tuple(charge_host_growth(e, b, pool.config.objective) for e, b in paired)
    host_growth = tuple(e.host_params - b for e, b in paired)
    return static, dataclasses.replace(widened, episodes=charged, host_params_added=host_growth)


def evaluate_heuristic(
    env_config: EnvConfig, config: EvalConfig = EvalConfig(), *, gamma: float = DEFAULT_GAMMA
) -> EvalReport:
    """Run the heuristic bundle on ``config.episodes`` episodes of ``env_config``.

    ``gamma`` discounts the reward; the default is PPOConfig's, so the returns
    are comparable with a default training run's.
    """
    device = resolve_device(config.device)
    pool = VectorEnvPool(
        env_config, min(config.num_envs, config.episodes), gamma=gamma, device=device, engine=config.engine
    )
    seeds = config.episode_seeds()
    with torch_threads(config.num_threads), isolated_global_rngs(config.seed, device):
        row = play_row(HEURISTIC, pool, seeds, _heuristic_actor)
    return EvalReport((row,), seeds, to_plain(env_config), None)


def _load_environment(data: dict[str, Any], data_dir: str | None) -> tuple[EnvConfig, float]:
    """The checkpoint's environment config (``data_dir`` overridden if given) and its PPO gamma."""
    env_plain = dict(data["config"].get("env", {}))
    if data_dir is not None:
        env_plain["data_dir"] = data_dir
    try:
        env_config = from_plain(EnvConfig, env_plain, where="env")
        gamma = from_plain(PPOConfig, data["config"].get("ppo", {}), where="ppo").gamma
    except (ConfigKeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint environment config is not usable here: {exc}") from exc
    return env_config, gamma


def learned_rows(
    pool: VectorEnvPool,
    config: EvalConfig,
    name: str,
    policy: PolicyBundle,
    normalizer: ObservationNormalizer,
) -> tuple[EvalRow, EvalRow]:
    """The learned policy played greedily, then sampled (one generator per batch, from ``config.seed``)."""
    seeds = config.episode_seeds()

    def greedy(venv: VectorEnv, batch: range) -> ActFn:
        return PolicyActor(policy, len(batch), normalizer=normalizer, deterministic=True)

    def sampled(venv: VectorEnv, batch: range) -> ActFn:
        generator = torch.Generator(device=policy.device).manual_seed(config.sampling_seed(batch.start))
        return PolicyActor(policy, len(batch), normalizer=normalizer, generator=generator)

    return (
        play_row(name, pool, seeds, greedy),
        play_row(name + STOCHASTIC_SUFFIX, pool, seeds, sampled),
    )


def _checkpoint_pool(
    checkpoint: str | os.PathLike[str], config: EvalConfig, data_dir: str | None
) -> tuple[dict[str, Any], VectorEnvPool]:
    """The checkpoint's contents and a pool of its training environment, discounted with its ``ppo.gamma``.

    The data is read from ``data_dir``, never from a path only the checkpoint names (:func:`confirm_data_dir`).
    """
    data = read_checkpoint(checkpoint)
    env_config, gamma = _load_environment(data, confirm_data_dir(data["config"], data_dir, checkpoint=checkpoint))
    device = resolve_device(config.device)
    return data, VectorEnvPool(
        env_config, min(config.num_envs, config.episodes), gamma=gamma, device=device, engine=config.engine
    )


def checkpoint_baselines(
    checkpoint: str | os.PathLike[str], config: EvalConfig = EvalConfig(), *, data_dir: str | None = None
) -> BaselineRows:
    """The :class:`BaselineRows` of :func:`evaluate` for ``checkpoint`` (any checkpoint of the same environment).

    Raises:
        CheckpointError: unreadable checkpoint, its environment config is not usable here, or it reads data
            from a path that only it names (give ``data_dir``, as for :func:`evaluate`).
    """
    _, pool = _checkpoint_pool(checkpoint, config, data_dir)
    with torch_threads(config.num_threads), isolated_global_rngs(config.seed, pool.device):
        return baseline_rows(pool, config)


def evaluate(
    checkpoint: str | os.PathLike[str],
    config: EvalConfig = EvalConfig(),
    *,
    data_dir: str | None = None,
    baselines: BaselineRows | None = None,
) -> EvalReport:
    """Compare the checkpoint's policy (greedy and sampled) with every baseline on the same episodes.

    The environment is the checkpoint's training environment, on the data at ``data_dir``: required
    when its task reads files (``cifar10``, ``text`` with a corpus), since a path only the checkpoint
    names is never read; it may be a copy on another machine. Its reward is discounted with the
    checkpoint's ``ppo.gamma``, so the returns are comparable with the training run's. The greedy row is the
    report's reference: every row's objective is compared with it. ``baselines`` (from
    :func:`checkpoint_baselines` of another checkpoint of the same environment) are reused instead
    of played again; the report is the same either way.

    Raises:
        CheckpointError: unreadable or incompatible checkpoint, its policy cannot be rebuilt, or its
            task reads files and ``data_dir`` is None.
        ValueError: ``baselines`` were played on another environment, discount or evaluation config.
    """
    data, pool = _checkpoint_pool(checkpoint, config, data_dir)
    env_plain = to_plain(pool.config)
    if baselines is not None and (baselines.env, baselines.gamma, baselines.config) != (env_plain, pool.gamma, config):
        raise ValueError("the baseline rows were played on another environment, discount or evaluation config")
    seeds = config.episode_seeds()
    with torch_threads(config.num_threads), isolated_global_rngs(config.seed, pool.device):
        venv = pool.get(pool.batch_size)
        header = data["policy"]
        check_compatible(
            header, slot_config=venv.slot_config, action_space=venv.action_space, feature_dim=venv.feature_dim
        )
        policy = rebuild_policy(header, data["policy_state"], device=pool.device, compile_mode="off")
        normalizer = ObservationNormalizer(venv.feature_dim)
        try:
            normalizer.load_state_dict(data["normalizers"]["obs"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint observation normaliser cannot be restored: {exc}") from exc
        greedy, sampled = learned_rows(pool, config, f"checkpoint ({header['type']})", policy, normalizer)
        shared = baselines if baselines is not None else baseline_rows(pool, config)
        rows = (greedy, sampled, *shared.rules)
        if config.costly_baselines:
            rows += (
                best_fixed_schedule(shared.fixed_schedules),
                open_loop_row(pool, seeds, greedy),
                *architecture_rows(pool, seeds, greedy.episodes),
            )
    return EvalReport(
        rows, seeds, env_plain, str(checkpoint), reference=greedy.policy, fixed_schedules=shared.fixed_schedules
    )
