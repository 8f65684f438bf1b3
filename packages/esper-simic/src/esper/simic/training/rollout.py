"""One round of lockstep episodes: N environments, one batched policy call per step.

The rollout reads top to bottom like CleanRL's loop body: reset the N environments → for each
step: normalise the raw observations with *frozen* statistics → one ``get_action`` for all envs
→ step the envs → normalise rewards → bootstrap V(s_{t+1}) for time-limit truncations with the
carried hidden state → store the transition. Environments that ended early (a governor rollback
is a true terminal) are padding for the rest of the round; the batch keeps its static size.

Everything the trainer needs afterwards (episode outcomes, the raw observations for the
normaliser update, op counts, rollout entropies, phase timings) comes back as a frozen
:class:`RolloutResult`; nothing here logs.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from esper.simic.agent import ObservationNormalizer, RewardNormalizer, RolloutBuffer
from esper.tamiyo.contract import ActionMasks, LifecycleOp, Observation
from esper.tamiyo.policy import ActionResult, Hidden, PolicyBundle


class VectorEnvLike(Protocol):
    """The part of :class:`esper.simic.env.VectorEnv` a rollout uses (lets tests drive toy envs)."""

    @property
    def num_envs(self) -> int: ...

    def reset(self, seeds: Sequence[int]) -> Any: ...

    def step(self, actions: Mapping[str, torch.Tensor]) -> Any: ...


@dataclass(frozen=True, slots=True)
class RolloutResult:
    """What one round of lockstep episodes produced, besides the filled buffer."""

    episodes: tuple[Mapping[str, Any], ...]
    """``info["episode"]`` of each env (in env order) from the step that ended its episode."""
    raw_features: torch.Tensor
    """float32 ``[num_transitions, F]`` raw observation features the policy acted on (for the normaliser)."""
    num_transitions: int
    """Valid transitions stored (sum of episode lengths)."""
    invalid_actions: int
    """Transitions whose sampled action was invalid and executed as WAIT."""
    executed_op_counts: tuple[int, ...]
    """Count of each executed op index over valid transitions."""
    head_entropies: Mapping[str, float | None]
    """Mean normalised entropy of each head over valid steps where the sampled op made it relevant."""
    env_s: float
    """Seconds in ``reset`` and ``step`` of the vector env."""
    policy_s: float
    """Seconds in ``get_action``/``get_value`` (incl. observation normalisation and device transfers)."""


def supports_generator(policy: PolicyBundle) -> bool:
    """Whether ``policy.get_action`` accepts a ``generator=`` keyword (optional beyond the protocol)."""
    try:
        parameters = inspect.signature(policy.get_action).parameters
    except (TypeError, ValueError):
        return False
    return "generator" in parameters


def _normalised(obs: Observation, normalizer: ObservationNormalizer | None, device: torch.device) -> Observation:
    features = obs.features if normalizer is None else normalizer.normalize(obs.features)
    return Observation(features.to(device), obs.blueprint_indices.to(device))


def act(
    policy: PolicyBundle,
    obs: Observation,
    masks: ActionMasks,
    hidden: Hidden,
    *,
    normalizer: ObservationNormalizer | None,
    generator: torch.Generator | None,
    deterministic: bool = False,
) -> tuple[Observation, ActionMasks, ActionResult]:
    """One batched policy step on raw CPU ``obs``; returns the (normalised, on-device) inputs too."""
    device = policy.device
    policy_obs = _normalised(obs, normalizer, device)
    policy_masks = masks.to(device)
    kwargs: dict[str, Any] = {} if generator is None else {"generator": generator}
    result = policy.get_action(policy_obs, policy_masks, hidden, deterministic, **kwargs)
    return policy_obs, policy_masks, result


def collect_rollout(
    venv: VectorEnvLike,
    policy: PolicyBundle,
    buffer: RolloutBuffer,
    *,
    seeds: Sequence[int],
    obs_normalizer: ObservationNormalizer,
    reward_normalizer: RewardNormalizer,
    generator: torch.Generator | None,
) -> RolloutResult:
    """Run one round of ``venv.num_envs`` episodes with ``policy`` and fill ``buffer``.

    Args:
        seeds: one reset seed per env.
        obs_normalizer: frozen during the round (only ``normalize`` is called).
        reward_normalizer: updated with every reward (its ``normalize`` does that).
        generator: sampling generator passed to ``get_action`` (None: the bundle's default RNG).

    Raises:
        RuntimeError: an episode lasted longer than ``buffer.num_steps`` (the BPTT invariant:
            one buffer row holds exactly one episode).
    """
    num_envs = venv.num_envs
    space = policy.action_space
    env_s = policy_s = 0.0
    started = time.perf_counter()
    reset = venv.reset(seeds)
    env_s += time.perf_counter() - started
    obs, masks = reset.obs, reset.masks
    hidden = policy.initial_hidden(num_envs)
    buffer.reset(hidden)

    episodes: list[Mapping[str, Any] | None] = [None] * num_envs
    raw_features: list[torch.Tensor] = []
    invalid = torch.zeros((), dtype=torch.long)
    op_counts = torch.zeros(space.num_ops, dtype=torch.long)
    entropy_sums = {h: torch.zeros((), device=policy.device) for h in space.head_names}
    entropy_counts = {h: torch.zeros((), dtype=torch.long, device=policy.device) for h in space.head_names}
    running = torch.ones(num_envs, dtype=torch.bool)
    while bool(running.any()):
        if buffer.full:
            raise RuntimeError(
                f"episodes outlasted the rollout buffer ({buffer.num_steps} steps); the env's episode length "
                "and the buffer length must agree"
            )
        started = time.perf_counter()
        policy_obs, policy_masks, result = act(
            policy, obs, masks, hidden, normalizer=obs_normalizer, generator=generator
        )
        actions = {h: a.cpu() for h, a in result.actions.items()}
        policy_s += time.perf_counter() - started

        started = time.perf_counter()
        step = venv.step(actions)
        env_s += time.perf_counter() - started

        active = step.active
        ended = step.terminated | step.truncated
        rewards = reward_normalizer.normalize(step.rewards, ended, active)
        bootstrap = None
        if bool((active & step.truncated).any()):
            started = time.perf_counter()
            bootstrap = policy.get_value(_normalised(step.obs, obs_normalizer, policy.device), result.hidden)
            policy_s += time.perf_counter() - started
        buffer.add(
            obs=policy_obs,
            masks=policy_masks,
            result=result,
            executed_op=step.executed_op,
            rewards=rewards,
            terminated=step.terminated,
            truncated=step.truncated,
            active=active,
            bootstrap_values=bootstrap,
        )

        raw_features.append(obs.features[active])
        op_counts += torch.bincount(step.executed_op[active], minlength=space.num_ops)
        relevant = space.relevance_masks(result.actions[space.op_head])  # on the policy's device
        live = active.to(policy.device)
        for head in space.head_names:
            selected = live & relevant[head]
            entropy_sums[head] += torch.where(selected, result.entropies[head].float(), 0.0).sum()
            entropy_counts[head] += selected.sum()
        for i in torch.nonzero(active & ended).flatten().tolist():
            episodes[i] = step.infos[i]["episode"]
        # The env executes an invalid action as WAIT, so "executed != sampled" is exactly "invalid".
        invalid += (active & (step.executed_op != actions[space.op_head])).sum()
        running &= ~ended
        hidden = result.hidden
        obs, masks = step.obs, step.masks

    finished = tuple(e for e in episodes if e is not None)
    if len(finished) != num_envs:
        raise RuntimeError("an environment stopped being active without reporting its episode")
    counts = {h: int(c) for h, c in entropy_counts.items()}
    return RolloutResult(
        episodes=finished,
        raw_features=torch.cat(raw_features),
        num_transitions=int(buffer.valid.sum()),
        invalid_actions=int(invalid),
        executed_op_counts=tuple(int(c) for c in op_counts.tolist()),
        head_entropies={h: (float(s) / counts[h] if counts[h] else None) for h, s in entropy_sums.items()},
        env_s=env_s,
        policy_s=policy_s,
    )


def op_count_names(counts: Sequence[int]) -> dict[str, int]:
    """``{op name: count}`` for the morphogenetic op head (generic index names for other spaces)."""
    names = [op.name for op in LifecycleOp] if len(counts) == len(LifecycleOp) else [str(i) for i in range(len(counts))]
    return dict(zip(names, counts, strict=True))
