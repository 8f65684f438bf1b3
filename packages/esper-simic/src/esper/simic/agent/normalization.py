"""Running normalisers for observations, rewards and value targets.

All three keep exact running statistics (Chan et al.'s parallel mean/variance update), not an
exponential moving average: the reference's EMA from step 0 adapts by about 1% per round, so early
rounds saw badly scaled inputs. Statistics live in float64; outputs keep the
input's dtype. Each has ``state_dict``/``load_state_dict`` made of plain tensors, floats and ints,
so checkpoints load with ``torch.load(weights_only=True)``.

Who calls what (the trainer's job, documented here because the order matters):

* ``ObservationNormalizer``: ``normalize`` every step with the statistics *frozen* for the whole
  rollout, so the observations stored in the buffer are exactly what the policy saw and the
  update's log-probs match the rollout's; ``update`` once per round with that round's raw
  observations, before the PPO update.
* ``RewardNormalizer``: ``normalize`` each step's rewards as they arrive (this also updates it).
* ``ValueNormalizer``: owned by the PPO agent; updated once per update with the round's returns.

Data-parallel runs pass a :class:`~esper.simic.agent.collectives.Collectives`: every update then
merges every replica's batch statistics in rank order, so all replicas hold the same statistics.
The reward normaliser updates locally at every step (replicas may take different numbers of steps,
so a per-step collective could not match up) and merges the replicas' samples of the round in
:meth:`RewardNormalizer.end_round`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from esper.simic.agent.collectives import LOCAL, Collectives

_STATS_DTYPE = torch.float64


def _check_positive(**values: float) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that is not > 0."""
    for name, value in values.items():
        if value <= 0.0:
            raise ValueError(f"{name} must be > 0, got {value}")


class RunningMeanStd:
    """Exact running mean and population variance of a stream of ``[..., *shape]`` batches.

    Before the first update it reports mean 0 and variance 1 (so normalising is the identity);
    the first update adopts that batch's statistics exactly, later ones merge with them.
    """

    def __init__(self, shape: Sequence[int] = (), *, device: torch.device | str = "cpu"):
        self.shape = tuple(int(s) for s in shape)
        self.mean = torch.zeros(self.shape, dtype=_STATS_DTYPE, device=device)
        self.var = torch.ones(self.shape, dtype=_STATS_DTYPE, device=device)
        self.count = 0

    def update(self, batch: torch.Tensor, reduce: Collectives = LOCAL) -> None:
        """Fold in ``batch [..., *shape]`` (all leading dims are samples). An empty batch is a no-op.

        With several replicas, every replica's batch statistics are merged in rank order (every
        replica must call this, even with an empty batch).
        """
        if batch.dim() < len(self.shape) or tuple(batch.shape[batch.dim() - len(self.shape) :]) != self.shape:
            raise ValueError(f"batch of shape {list(batch.shape)} does not end with the statistics shape {self.shape}")
        samples = batch.detach().to(device=self.mean.device, dtype=_STATS_DTYPE).reshape(-1, *self.shape)
        n = samples.shape[0]
        if reduce.world_size > 1:
            self._merge_replicas(samples, reduce)
            return
        if n == 0:
            return
        self._merge(n, samples.mean(dim=0), samples.var(dim=0, correction=0))

    def _merge_replicas(self, samples: torch.Tensor, reduce: Collectives) -> None:
        n = samples.shape[0]
        zeros = torch.zeros(self.shape, dtype=_STATS_DTYPE, device=self.mean.device)
        moments = torch.cat(
            [
                torch.tensor([float(n)], dtype=_STATS_DTYPE, device=self.mean.device),
                (samples.mean(dim=0) if n else zeros).reshape(-1),
                (samples.var(dim=0, correction=0) if n else zeros).reshape(-1),
            ]
        )
        size = zeros.numel()
        for part in reduce.gather(moments):
            count = int(part[0])
            if count:
                self._merge(count, part[1 : 1 + size].reshape(self.shape), part[1 + size :].reshape(self.shape))

    def _merge(self, n: int, batch_mean: torch.Tensor, batch_var: torch.Tensor) -> None:
        """Chan et al.'s merge of ``n`` samples with these statistics into the running ones."""
        total = self.count + n  # with count 0 the merge below reduces to the batch statistics
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.var = (self.var * self.count + batch_var * n + delta.square() * (self.count * n / total)) / total
        self.count = total

    def scale(self, epsilon: float, *, min_count: int) -> float:
        """Scalar divisor ``sqrt(var + epsilon)``, or 1.0 (no scaling) until ``min_count`` samples were seen.

        For ``shape == ()`` statistics: the reward and value normalisers divide by it.
        """
        if self.count < min_count:
            return 1.0
        return float((self.var + epsilon).sqrt())

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load statistics saved by :meth:`state_dict`; a shape mismatch raises ``ValueError``."""
        mean, var = state["mean"], state["var"]
        if tuple(mean.shape) != self.shape or tuple(var.shape) != self.shape:
            raise ValueError(
                f"running statistics of shape {list(mean.shape)} do not fit a normaliser of shape {list(self.shape)}"
            )
        self.mean = mean.to(device=self.mean.device, dtype=_STATS_DTYPE).clone()
        self.var = var.to(device=self.var.device, dtype=_STATS_DTYPE).clone()
        self.count = int(state["count"])


class ObservationNormalizer:
    """Per-feature ``clamp((x - mean) / sqrt(var + epsilon), -clip, clip)`` over observation features.

    Frozen during a rollout (``normalize`` never updates); ``update`` once per round with the raw
    features of the round (see the module docstring). A constant feature maps to 0.
    """

    def __init__(
        self,
        feature_dim: int,
        *,
        clip: float = 10.0,
        epsilon: float = 1e-8,
        device: torch.device | str = "cpu",
        reduce: Collectives = LOCAL,
    ):
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        _check_positive(clip=clip, epsilon=epsilon)
        self.clip = float(clip)
        self.epsilon = float(epsilon)
        self.stats = RunningMeanStd((feature_dim,), device=device)
        self.reduce = reduce

    @property
    def feature_dim(self) -> int:
        return self.stats.shape[0]

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised copy of raw ``features [..., F]`` in their dtype; does not update the statistics."""
        if features.shape[-1] != self.feature_dim:
            raise ValueError(f"features have {features.shape[-1]} columns, the normaliser expects {self.feature_dim}")
        mean = self.stats.mean.to(features.device)
        scale = (self.stats.var.to(features.device) + self.epsilon).sqrt()
        out = ((features.to(_STATS_DTYPE) - mean) / scale).clamp(-self.clip, self.clip)
        return out.to(features.dtype)

    def update(self, raw_features: torch.Tensor) -> None:
        """Fold in a round's raw ``features [..., F]`` (any leading sample dims), every replica's."""
        self.stats.update(raw_features, self.reduce)

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict(), "clip": self.clip, "epsilon": self.epsilon}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])
        self.clip = float(state["clip"])
        self.epsilon = float(state["epsilon"])


class RewardNormalizer:
    """Scale rewards by the running std of the discounted return, then clip (no mean subtraction).

    Each environment keeps its discounted return ``G = gamma * G + r`` (reset after an episode
    ends); the std of those returns is the scale (Engstrom et al. 2020, "Implementation Matters";
    gymnasium's ``NormalizeReward``). The mean is not subtracted because shifting rewards would
    change which behaviour is optimal (e.g. turn a living reward into a living cost).
    """

    def __init__(
        self, num_envs: int, *, gamma: float, clip: float = 10.0, epsilon: float = 1e-8, reduce: Collectives = LOCAL
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        _check_positive(clip=clip, epsilon=epsilon)
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.epsilon = float(epsilon)
        self.stats = RunningMeanStd(())
        self.discounted_returns = torch.zeros(num_envs, dtype=_STATS_DTYPE)
        self.reduce = reduce
        self._round_start = self.stats.state_dict()
        self._round_samples: list[torch.Tensor] = []

    @property
    def num_envs(self) -> int:
        return self.discounted_returns.shape[0]

    @property
    def scale(self) -> float:
        """Current divisor ``sqrt(var(G) + epsilon)``; 1.0 until two returns have been seen."""
        return self.stats.scale(self.epsilon, min_count=2)

    def normalize(
        self, rewards: torch.Tensor, episode_end: torch.Tensor, active: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Update with one step of raw ``rewards [num_envs]`` and return them scaled and clipped.

        Args:
            rewards: float ``[num_envs]`` raw rewards of this step.
            episode_end: bool ``[num_envs]``, True where this step ended the episode (terminated or
                truncated); that env's running return restarts at the next step.
            active: bool ``[num_envs]``, False for envs that were not stepped (their reward is
                ignored and they do not enter the statistics); ``None`` = all active.

        Returns:
            ``clamp(rewards / scale, -clip, clip)`` in ``rewards``' dtype and device; 0 for inactive envs.
        """
        if rewards.shape != (self.num_envs,) or episode_end.shape != (self.num_envs,):
            raise ValueError(
                f"rewards {list(rewards.shape)} and episode_end {list(episode_end.shape)} "
                f"must both be [{self.num_envs}]"
            )
        active_cpu = torch.ones(self.num_envs, dtype=torch.bool) if active is None else active.detach().cpu()
        raw = rewards.detach().to("cpu", _STATS_DTYPE)
        updated = self.gamma * self.discounted_returns + raw
        self.discounted_returns = torch.where(active_cpu, updated, self.discounted_returns)
        self.stats.update(self.discounted_returns[active_cpu])
        if self.reduce.world_size > 1:
            self._round_samples.append(self.discounted_returns[active_cpu])
        scaled = torch.where(active_cpu, (raw / self.scale).clamp(-self.clip, self.clip), torch.zeros_like(raw))
        ended = active_cpu & episode_end.detach().cpu()
        self.discounted_returns = torch.where(ended, torch.zeros_like(raw), self.discounted_returns)
        return scaled.to(device=rewards.device, dtype=rewards.dtype)

    def end_round(self) -> None:
        """Make the statistics every replica's: those at the round's start merged with every
        replica's samples of the round, in rank order (one process: nothing to do)."""
        if self.reduce.world_size == 1:
            return
        self.stats.load_state_dict(self._round_start)
        samples = torch.cat(self._round_samples) if self._round_samples else torch.zeros(0, dtype=_STATS_DTYPE)
        self.stats.update(samples, self.reduce)
        self._round_start = self.stats.state_dict()
        self._round_samples = []

    def state_dict(self) -> dict[str, Any]:
        return {
            "stats": self.stats.state_dict(),
            "discounted_returns": self.discounted_returns.clone(),
            "gamma": self.gamma,
            "clip": self.clip,
            "epsilon": self.epsilon,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a saved state; a different number of environments raises ``ValueError``."""
        returns = state["discounted_returns"]
        if tuple(returns.shape) != (self.num_envs,):
            raise ValueError(f"saved reward normaliser has {returns.shape[0]} envs, this one has {self.num_envs}")
        self.stats.load_state_dict(state["stats"])
        self._round_start = self.stats.state_dict()
        self._round_samples = []
        self.discounted_returns = returns.to(_STATS_DTYPE).clone()
        self.gamma = float(state["gamma"])
        self.clip = float(state["clip"])
        self.epsilon = float(state["epsilon"])


class ValueNormalizer:
    """A scalar scale for value targets: the critic learns ``returns / std(returns)``.

    A simplified PopArt without the mean shift or output rescaling. It is the
    identity until it has seen ``warmup_samples`` returns, so a fresh critic is not judged against a
    scale estimated from a handful of numbers. ``denormalize`` turns critic outputs back into the
    return scale (GAE, explained variance).
    """

    def __init__(self, *, warmup_samples: int = 32, epsilon: float = 1e-8, reduce: Collectives = LOCAL):
        if warmup_samples < 1:
            raise ValueError(f"warmup_samples must be >= 1, got {warmup_samples}")
        _check_positive(epsilon=epsilon)
        self.warmup_samples = int(warmup_samples)
        self.epsilon = float(epsilon)
        self.stats = RunningMeanStd(())
        self.reduce = reduce

    @property
    def scale(self) -> float:
        """The divisor: 1.0 during warmup, else ``sqrt(var + epsilon)`` of the returns seen so far."""
        return self.stats.scale(self.epsilon, min_count=self.warmup_samples)

    def update(self, returns: torch.Tensor) -> None:
        """Fold in a 1-D tensor of returns (valid steps only), every replica's."""
        if returns.dim() != 1:
            raise ValueError(f"returns must be 1-D (valid steps only), got shape {list(returns.shape)}")
        self.stats.update(returns, self.reduce)

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        return values / self.scale

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.scale

    def state_dict(self) -> dict[str, Any]:
        return {
            "stats": self.stats.state_dict(),
            "warmup_samples": self.warmup_samples,
            "epsilon": self.epsilon,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])
        self.warmup_samples = int(state["warmup_samples"])
        self.epsilon = float(state["epsilon"])
