"""Side-by-side evaluation: a checkpoint's deterministic policy vs the heuristic vs no growth.

Every policy plays the *same* episodes (same reset seeds, drawn from an evaluation stream that
never overlaps the training seeds), so differences are paired, not luck of the draw. The
learned policy sees observations normalised with the checkpoint's frozen statistics, exactly as
in training; the heuristic reads raw observations (its thresholds are in raw units); the
no-growth baseline always WAITs (every other head at its canonical placeholder), i.e. the
impaired host trained alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from esper.simic.agent import ObservationNormalizer, PPOConfig
from esper.simic.env import EnvConfig, EpisodeSummary, VectorEnv
from esper.simic.env.rewards import DEFAULT_GAMMA
from esper.simic.training.checkpoint import CheckpointError, check_compatible, read_checkpoint, rebuild_policy
from esper.simic.training.dataclass_io import ConfigKeyError, from_plain, to_plain
from esper.simic.training.metrics import EpisodeStats
from esper.simic.training.rng import EVAL_RESET_STREAM, derive_seed, isolated_global_rngs, torch_threads
from esper.simic.training.rollout import ActFn, PolicyActor, play_round
from esper.simic.training.traces import EpisodeTrace, TraceRecorder, diversity_by_policy
from esper.simic.training.vectorized import resolve_device
from esper.tamiyo.contract import ActionMasks, ActionSpace, LifecycleOp
from esper.tamiyo.policy import PolicyBundle, create_policy

HEURISTIC = "heuristic"
NO_GROWTH = "no-growth (WAIT)"


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """How many episodes to play per policy, and on what."""

    episodes: int = 8
    """Episodes per policy; every policy plays the same episodes (same reset seeds)."""
    num_envs: int = 4
    """Environments stepped in lockstep while evaluating."""
    seed: int = 1234
    """Seed of the evaluation episodes (a stream separate from the training seeds)."""
    device: str = "cpu"
    """Torch device of the evaluated policy."""
    num_threads: int | None = 1
    """torch CPU threads while evaluating (None: torch's default)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}")

    def episode_seeds(self) -> tuple[int, ...]:
        """Reset seed of each evaluation episode."""
        return tuple(derive_seed(self.seed, EVAL_RESET_STREAM, i) for i in range(self.episodes))


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One policy's results over the evaluation episodes."""

    policy: str
    """Display name of the policy."""
    episodes: tuple[EpisodeSummary, ...]
    """The summary of every episode, in the order of the report's seeds (rows are paired by index)."""

    @property
    def stats(self) -> EpisodeStats:
        """Per-episode returns and accuracies plus lifecycle totals."""
        return EpisodeStats.from_episodes(self.episodes)

    def to_json(self) -> dict[str, Any]:
        n = self.stats.num_episodes
        return {
            "policy": self.policy,
            "episodes": n,
            "mean_final_accuracy": self.stats.mean_final_accuracy,
            "std_final_accuracy": self.stats.std_final_accuracy,
            "mean_return": self.stats.mean_return,
            "seeds_fossilized_per_episode": self.stats.fossilized / n,
            "params_added_per_episode": self.stats.params_added / n,
            "final_accuracies": list(self.stats.final_accuracies),
            "returns": list(self.stats.returns),
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Rows of an evaluation plus what they were measured on."""

    rows: tuple[EvalRow, ...]
    """One row per policy, in the order evaluated."""
    seeds: tuple[int, ...]
    """Reset seeds of the episodes every row played."""
    env: Mapping[str, Any]
    """Environment config (plain dict) of the episodes."""
    checkpoint: str | None
    """Evaluated checkpoint, if any."""
    traces: tuple[EpisodeTrace, ...] = ()
    """Step-by-step traces of every row's episodes (``traces.py``), rows in order."""

    @property
    def sequence_diversity(self) -> dict[str, float]:
        """Per policy: distinct action sequences / episodes (1/N: the same sequence in all N episodes)."""
        return diversity_by_policy(self.traces)

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "seeds": list(self.seeds),
            "env": dict(self.env),
            "rows": [row.to_json() for row in self.rows],
            "distinct_action_sequences_per_episode": self.sequence_diversity,
        }

    def table(self) -> str:
        """A fixed-width text table: mean final accuracy ± std, mean return, fossilized, params added."""
        header = ("policy", "episodes", "final acc % (± std)", "mean return", "fossilized/ep", "params added/ep")
        lines = [header]
        for row in self.rows:
            data = row.to_json()
            lines.append(
                (
                    row.policy,
                    str(data["episodes"]),
                    f"{data['mean_final_accuracy']:.2f} ± {data['std_final_accuracy']:.2f}",
                    f"{data['mean_return']:+.3f}",
                    f"{data['seeds_fossilized_per_episode']:.2f}",
                    f"{data['params_added_per_episode']:,.0f}",
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        table = "\n".join(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
            for line in lines
        )
        return table + self._diversity_footer()

    def _diversity_footer(self) -> str:
        if not self.traces:
            return ""
        shares = ", ".join(f"{policy} {share:.2f}" for policy, share in self.sequence_diversity.items())
        return (
            "\ndistinct action sequences / episodes (op + relevant heads per step; 1/N = one script "
            f"for all N episodes): {shares}"
        )


def wait_actions(masks: ActionMasks, space: ActionSpace) -> dict[str, torch.Tensor]:
    """The no-growth action for every env: op WAIT, every other head at its canonical placeholder."""
    actions = {head: space.canonical_action(head, masks.heads[head]) for head in space.head_names}
    actions[space.op_head] = torch.full_like(actions[space.op_head], int(LifecycleOp.WAIT))
    return actions


def no_growth_actor(space: ActionSpace) -> ActFn:
    """The no-growth baseline as an act function: :func:`wait_actions` whatever the envs observe."""
    return lambda obs, masks: wait_actions(masks, space)


def play_episodes(
    pool: VectorEnvPool,
    seeds: Sequence[int],
    policy: PolicyBundle | None,
    *,
    normalizer: ObservationNormalizer | None = None,
    recorder: TraceRecorder | None = None,
) -> tuple[EpisodeSummary, ...]:
    """Play one episode per seed, ``policy`` acting deterministically (``None`` = always WAIT).

    ``recorder`` traces every step of the episodes.
    """
    episodes: list[EpisodeSummary] = []
    for batch in pool.batches(seeds):
        venv = pool.get(len(batch))
        act = (
            no_growth_actor(venv.action_space)
            if policy is None
            else PolicyActor(policy, len(batch), normalizer=normalizer, deterministic=True)
        )
        if recorder is None:
            episodes += play_round(venv, act, batch).episodes
        else:
            episodes += play_round(venv, recorder.watch(act, batch), batch, on_step=recorder.on_step).episodes
    return tuple(episodes)


class VectorEnvPool:
    """Vector envs of one config by batch size, built on first use (the last batch may be smaller).

    Args:
        config: environment config of every env.
        batch_size: episodes played in lockstep per batch.
        gamma: discount of the reward's stage shaping (a checkpoint's ``ppo.gamma``).
    """

    def __init__(self, config: EnvConfig, batch_size: int, *, gamma: float = DEFAULT_GAMMA) -> None:
        self.config = config
        self.batch_size = batch_size
        self.gamma = gamma
        self._envs: dict[int, VectorEnv] = {}

    def get(self, num_envs: int) -> VectorEnv:
        if num_envs not in self._envs:
            self._envs[num_envs] = VectorEnv(self.config, num_envs, gamma=self.gamma)
        return self._envs[num_envs]

    def batches(self, seeds: Sequence[int]) -> list[Sequence[int]]:
        return [seeds[i : i + self.batch_size] for i in range(0, len(seeds), self.batch_size)]


def heuristic_policy(venv: VectorEnv) -> PolicyBundle:
    """The rule-based bundle for ``venv``'s slots and topology."""
    return create_policy(HEURISTIC, slot_config=venv.slot_config, feature_dim=venv.feature_dim, topology=venv.topology)


def evaluate_heuristic(
    env_config: EnvConfig, config: EvalConfig = EvalConfig(), *, gamma: float = DEFAULT_GAMMA
) -> EvalReport:
    """Run the heuristic bundle on ``config.episodes`` episodes of ``env_config``.

    ``gamma`` discounts the reward's stage shaping; the default is PPOConfig's, so the returns
    are comparable with a default training run's.
    """
    pool = VectorEnvPool(env_config, min(config.num_envs, config.episodes), gamma=gamma)
    seeds = config.episode_seeds()
    with torch_threads(config.num_threads), isolated_global_rngs(config.seed, torch.device("cpu")):
        episodes = play_episodes(pool, seeds, heuristic_policy(pool.get(pool.batch_size)))
    return EvalReport((EvalRow(HEURISTIC, episodes),), seeds, to_plain(env_config), None)


def evaluate(
    checkpoint: str | os.PathLike[str],
    config: EvalConfig = EvalConfig(),
    *,
    data_dir: str | None = None,
) -> EvalReport:
    """Compare the checkpoint's deterministic policy, the heuristic and no growth on the same episodes.

    The environment is the checkpoint's training environment (``data_dir`` can point a CIFAR run
    at its data on another machine), and its reward is discounted with the checkpoint's
    ``ppo.gamma``, so the returns are comparable with the training run's.

    Raises:
        CheckpointError: unreadable or incompatible checkpoint, or its policy cannot be rebuilt.
    """
    data = read_checkpoint(checkpoint)
    env_plain = dict(data["config"].get("env", {}))
    if data_dir is not None:
        env_plain["data_dir"] = data_dir
    try:
        env_config = from_plain(EnvConfig, env_plain, where="env")
        gamma = from_plain(PPOConfig, data["config"].get("ppo", {}), where="ppo").gamma
    except (ConfigKeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint environment config is not usable here: {exc}") from exc
    device = resolve_device(config.device)
    pool = VectorEnvPool(env_config, min(config.num_envs, config.episodes), gamma=gamma)
    seeds = config.episode_seeds()
    with torch_threads(config.num_threads), isolated_global_rngs(config.seed, device):
        venv = pool.get(pool.batch_size)
        header = data["policy"]
        check_compatible(
            header, slot_config=venv.slot_config, action_space=venv.action_space, feature_dim=venv.feature_dim
        )
        policy = rebuild_policy(header, data["policy_state"], device=device, compile_mode="off")
        normalizer = ObservationNormalizer(venv.feature_dim)
        try:
            normalizer.load_state_dict(data["normalizers"]["obs"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint observation normaliser cannot be restored: {exc}") from exc
        learned = f"checkpoint ({header['type']})"
        recorders = [TraceRecorder(name, venv.action_space) for name in (learned, HEURISTIC, NO_GROWTH)]
        rows = (
            EvalRow(learned, play_episodes(pool, seeds, policy, normalizer=normalizer, recorder=recorders[0])),
            EvalRow(HEURISTIC, play_episodes(pool, seeds, heuristic_policy(venv), recorder=recorders[1])),
            EvalRow(NO_GROWTH, play_episodes(pool, seeds, None, recorder=recorders[2])),
        )
    traces = tuple(trace for recorder in recorders for trace in recorder.episodes)
    return EvalReport(rows, seeds, to_plain(env_config), str(checkpoint), traces)
