"""Gymnasium adapter: :class:`MorphogeneticEnv` as a ``gymnasium.Env`` (optional extra ``esper-simic[gym]``).

This module imports gymnasium at the top, so only import it when gymnasium is wanted;
``esper.simic.env`` itself never imports it.

Spaces:

* action: ``MultiDiscrete(head sizes in HEAD_NAMES order)``, i.e. ``[slot, blueprint, style, tempo,
  alpha_target, alpha_speed, alpha_curve, op]``. Heads that the chosen op does not use are ignored.
* observation: ``Box(float32[F + S])``: the raw feature vector (``ObservationLayout``, F = 23 + 31 S,
  plus S + 1 on a varied task) followed by the S slots' blueprint indices as floats (``BlueprintAction``
  value, −1 = empty slot).
  :meth:`MorphogeneticGymEnv.split_observation` recovers the two parts.

Masks follow the sb3-contrib ``MaskablePPO`` convention: :meth:`MorphogeneticGymEnv.action_masks`
returns one flat bool vector, the per-head masks concatenated in head order. sb3-contrib masks each
head independently, so it cannot express that the valid slots depend on the op (the contract's
``slot_by_op``); a sampled combination that is invalid (say FOSSILIZE on a slot that is not
HOLDING) is re-checked by the environment, executed as WAIT, reported with
``info["action_valid"] = False`` and charged the reward's invalid-action penalty.

Infos are plain dicts: the step's :class:`~esper.simic.env.results.StepInfo` fields (the reward
components as a nested dict) and, on the step that ends an episode, Esper's
:class:`~esper.simic.env.results.EpisodeSummary` under :data:`EPISODE_KEY`. ``info["episode"]`` is
left alone: it belongs to Gymnasium's ``RecordEpisodeStatistics`` and SB3's ``Monitor`` (keys
``r``, ``l``, ``t``), which sb3-contrib reads; wrap the env in one of them to get it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from esper.simic.env.config import EnvConfig
from esper.simic.env.morphogenetic import MorphogeneticEnv
from esper.simic.env.rewards import DEFAULT_GAMMA
from esper.tamiyo.contract import ActionMasks, BlueprintAction, Observation

#: Registered Gymnasium id of :class:`MorphogeneticGymEnv`.
ENV_ID = "esper/Morphogenetic-v0"
#: Info key of Esper's episode summary (a plain dict) on the step that ends an episode.
EPISODE_KEY = "esper_episode"
_ENTRY_POINT = f"{__name__}:MorphogeneticGymEnv"

ObsArray = np.ndarray[Any, np.dtype[np.float32]]


class MorphogeneticGymEnv(gymnasium.Env[ObsArray, np.ndarray]):
    """One morphogenetic environment behind the Gymnasium API.

    Args:
        config: environment configuration (default ``EnvConfig()``).
        device: torch device the host trains on.
        gamma: the reward's discount (the return telescopes to the objective under it); use the
            discount of the agent that learns from this env (default
            :data:`~esper.simic.env.rewards.DEFAULT_GAMMA`, PPOConfig's 0.99).
        **overrides: ``EnvConfig`` fields replaced in ``config``, so
            ``gymnasium.make(ENV_ID, task="synthetic", episode_length=5)`` works.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self, config: EnvConfig | None = None, *, device: str = "cpu", gamma: float = DEFAULT_GAMMA, **overrides: Any
    ) -> None:
        super().__init__()
        config = config or EnvConfig()
        self.config = replace(config, **overrides) if overrides else config
        self.env = MorphogeneticEnv(self.config, device=device, gamma=gamma)
        self.head_names: tuple[str, ...] = self.env.action_space.head_names
        head_sizes = self.env.action_space.head_sizes
        self.action_space = spaces.MultiDiscrete(np.asarray(head_sizes, dtype=np.int64))
        self.feature_dim = int(self.env.feature_dim)
        num_slots = self.env.slot_config.num_slots
        low = np.concatenate([np.full(self.feature_dim, -np.inf), np.full(num_slots, -1.0)]).astype(np.float32)
        high = np.concatenate(
            [np.full(self.feature_dim, np.inf), np.full(num_slots, float(max(BlueprintAction)))]
        ).astype(np.float32)
        self.observation_space = spaces.Box(low=low, high=high, dtype=np.float32)
        self._masks: ActionMasks | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsArray, dict[str, Any]]:
        """Start an episode; without ``seed`` the episode seed is drawn from ``self.np_random``."""
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        result = self.env.reset(episode_seed)
        self._masks = result.masks
        return self._flatten(result.obs), result.info.as_dict()

    def step(self, action: np.ndarray) -> tuple[ObsArray, float, bool, bool, dict[str, Any]]:
        """Execute one factored action (``int[num_heads]`` in head order) for one host epoch."""
        if self._masks is None:
            raise RuntimeError("call reset() before step()")
        values = np.asarray(action).reshape(-1)
        if values.shape[0] != len(self.head_names):
            raise ValueError(f"action needs {len(self.head_names)} entries {self.head_names}, got {action!r}")
        result = self.env.step({head: int(v) for head, v in zip(self.head_names, values, strict=True)})
        self._masks = result.masks
        info = result.info.as_dict()
        if result.episode is not None:
            info[EPISODE_KEY] = result.episode.as_dict()
        return self._flatten(result.obs), float(result.reward), bool(result.terminated), bool(result.truncated), info

    def action_masks(self) -> np.ndarray:
        """Flat bool ``[sum(head sizes)]``: the per-head masks concatenated in head order (sb3-contrib)."""
        if self._masks is None:
            raise RuntimeError("call reset() before action_masks()")
        return np.concatenate([self._masks.heads[h].cpu().numpy() for h in self.head_names]).astype(bool)

    def split_observation(self, obs: ObsArray) -> Observation:
        """Inverse of the flattening: ``Observation(features [..., F], blueprint_indices int64 [..., S])``."""
        array = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        return Observation(array[..., : self.feature_dim], array[..., self.feature_dim :].round().long())

    def _flatten(self, obs: Observation) -> ObsArray:
        features = obs.features.detach().cpu().numpy().astype(np.float32, copy=False)
        blueprints = obs.blueprint_indices.detach().cpu().numpy().astype(np.float32)
        return np.concatenate([features.reshape(-1), blueprints.reshape(-1)])


def register_envs() -> None:
    """Register :data:`ENV_ID` with Gymnasium's registry (idempotent: a second call does nothing)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point=_ENTRY_POINT)
