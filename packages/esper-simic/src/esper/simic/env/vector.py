"""``VectorEnv``: N morphogenetic environments stepped in lockstep, with batched tensors in and out.

All environments share one loaded task (read-only) and one config; each has its own host,
optimisers, governor and generator (seeded by its own reset seed). One call to ``step`` takes
``{head: int64[N]}`` (one batched policy call) and returns stacked observations ``[N, F]`` /
``[N, S]`` and masks ``[N, ...]``. An environment whose episode has ended is not stepped again
until the next ``reset``: it reports ``active=False``, reward 0, WAIT, and repeats its last
observation and masks. Observations are raw; the trainer normalises them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from esper.simic.env.architecture import FixedArchitecture
from esper.simic.env.config import EnvConfig
from esper.simic.env.datasets import TaskData, load_task
from esper.simic.env.engines import HostEngine, make_engine
from esper.simic.env.morphogenetic import MorphogeneticEnv
from esper.simic.env.results import EpisodeSummary, StepInfo, VectorReset, VectorStep
from esper.simic.env.rewards import DEFAULT_GAMMA
from esper.tamiyo.contract import (
    ActionMasks,
    ActionSpace,
    LifecycleOp,
    Observation,
    ObservationLayout,
    SlotConfig,
    stack_masks,
)


def _stack_obs(observations: Sequence[Observation]) -> Observation:
    return Observation(
        torch.stack([o.features for o in observations]), torch.stack([o.blueprint_indices for o in observations])
    )


class VectorEnv:
    """N copies of :class:`MorphogeneticEnv` under one config."""

    def __init__(
        self,
        config: EnvConfig,
        num_envs: int,
        device: torch.device | str = "cpu",
        *,
        gamma: float = DEFAULT_GAMMA,
        data: TaskData | None = None,
        engine: str = "auto",
    ) -> None:
        """``gamma`` discounts the reward: pass the trainer's PPO gamma. ``engine`` trains the host epochs
        (``auto``, ``loop`` or ``batched``: ``engines.py``)."""
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        shared = (data if data is not None else load_task(config)).to(device)
        self.config = config
        self.envs = tuple(MorphogeneticEnv(config, device, gamma=gamma, data=shared) for _ in range(num_envs))
        self.engine: HostEngine = make_engine(engine, num_envs, config.topology)
        self._obs: list[Observation] = []
        self._masks: list[ActionMasks] = []
        self._active: list[bool] = [False] * num_envs

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    @property
    def slot_config(self) -> SlotConfig:
        return self.envs[0].slot_config

    @property
    def layout(self) -> ObservationLayout:
        return self.envs[0].layout

    @property
    def action_space(self) -> ActionSpace:
        return self.envs[0].action_space

    @property
    def feature_dim(self) -> int:
        return self.envs[0].feature_dim

    @property
    def topology(self) -> str:
        return self.config.topology

    def reset(
        self, seeds: Sequence[int], *, architectures: Sequence[FixedArchitecture | None] | None = None
    ) -> VectorReset:
        """Reset every environment, env ``i`` with ``seeds[i]`` (and ``architectures[i]``, static baselines)."""
        if len(seeds) != self.num_envs:
            raise ValueError(f"need one seed per environment ({self.num_envs}), got {len(seeds)}")
        fixed = [None] * self.num_envs if architectures is None else list(architectures)
        if len(fixed) != self.num_envs:
            raise ValueError(f"need one architecture per environment ({self.num_envs}), got {len(fixed)}")
        results = [
            env.reset(int(seed), architecture=arch) for env, seed, arch in zip(self.envs, seeds, fixed, strict=True)
        ]
        self._obs = [r.obs for r in results]
        self._masks = [r.masks for r in results]
        self._active = [True] * self.num_envs
        return VectorReset(
            obs=_stack_obs(self._obs), masks=stack_masks(self._masks), infos=tuple(r.info for r in results)
        )

    def step(self, actions: Mapping[str, torch.Tensor]) -> VectorStep:
        """Step every active environment with its row of ``actions`` (``{head: int tensor [N]}``)."""
        if not self._obs:
            raise RuntimeError("VectorEnv.step called before reset")
        columns = {}
        for head, values in actions.items():
            flat = torch.as_tensor(values).reshape(-1)
            if flat.numel() != self.num_envs:
                raise ValueError(f"action head {head!r} has {flat.numel()} entries for {self.num_envs} environments")
            columns[head] = flat.tolist()
        n = self.num_envs
        rewards, terminated, truncated = [0.0] * n, [False] * n, [False] * n
        executed, active = [int(LifecycleOp.WAIT)] * n, list(self._active)
        infos: list[StepInfo | None] = [None] * n
        episodes: list[EpisodeSummary | None] = [None] * n
        stepping = [i for i in range(n) if active[i]]
        for i in stepping:
            self.envs[i].begin_step({head: column[i] for head, column in columns.items()})
        envs = [self.envs[i] for i in stepping]
        epochs = self.engine.train(envs) if envs else []
        validations = self.engine.validate(envs) if envs else []
        for i, epoch, validation in zip(stepping, epochs, validations, strict=True):
            result = self.envs[i].finish_step(epoch, validation)
            self._obs[i], self._masks[i] = result.obs, result.masks
            rewards[i], terminated[i], truncated[i] = result.reward, result.terminated, result.truncated
            executed[i], infos[i], episodes[i] = result.info.executed_op, result.info, result.episode
            self._active[i] = not (result.terminated or result.truncated)
        return VectorStep(
            obs=_stack_obs(self._obs),
            masks=stack_masks(self._masks),
            rewards=torch.tensor(rewards, dtype=torch.float32),
            terminated=torch.tensor(terminated, dtype=torch.bool),
            truncated=torch.tensor(truncated, dtype=torch.bool),
            executed_op=torch.tensor(executed, dtype=torch.int64),
            active=torch.tensor(active, dtype=torch.bool),
            infos=tuple(infos),
            episodes=tuple(episodes),
        )
