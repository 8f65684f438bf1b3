"""One round of lockstep episodes: N environments, one batched policy call per step.

:func:`play_round` is *the* step loop, shared by training, evaluation and tests: reset the N
environments with their seeds → until every episode has ended: ``act`` on the raw observations
and masks → step the envs → hand the step to ``on_step``. Environments that ended early (a
governor rollback is a true terminal) are inactive for the rest of the round; the batch keeps
its static size.

:func:`collect_rollout` is a training round on top of it, CleanRL's loop body: the policy acts on
observations normalised with *frozen* statistics (:class:`PolicyActor`); each step's rewards are
normalised, V(s_{t+1}) is bootstrapped for time-limit truncations with the carried hidden state
(the morphogenetic env's last epoch is a true terminal and is not bootstrapped; a time-limit
wrapper's truncations are),
and the transition is stored. Op counts, invalid actions and rollout entropies are read from the
filled buffer afterwards. Everything the trainer needs comes back as a frozen
:class:`RolloutResult`; nothing here logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from esper.simic.agent import ObservationNormalizer, RewardNormalizer, RolloutBatch, RolloutBuffer
from esper.simic.env import EpisodeSummary, VectorReset, VectorStep
from esper.tamiyo.contract import ActionMasks, ActionSpace, LifecycleOp, Observation
from esper.tamiyo.policy import ActionResult, PolicyBundle

ActFn = Callable[[Observation, ActionMasks], Mapping[str, torch.Tensor]]
"""Chooses ``{head: int64 [N]}`` (CPU) from the raw observations ``[N, ...]`` and masks of N envs.

Called once per lockstep step, in order; an act function keeps whatever memory it needs (a
:class:`PolicyActor` carries the recurrent state)."""

StepHook = Callable[[VectorStep], None]
"""Observes each lockstep step right after the envs took it (e.g. to store the transition)."""


class VectorEnvLike(Protocol):
    """The part of :class:`esper.simic.env.VectorEnv` a round uses (lets tests drive toy envs)."""

    @property
    def num_envs(self) -> int: ...

    def reset(self, seeds: Sequence[int]) -> VectorReset: ...

    def step(self, actions: Mapping[str, torch.Tensor]) -> VectorStep: ...


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """What :func:`play_round` saw: the episodes' summaries and the time spent in the envs."""

    episodes: tuple[EpisodeSummary, ...]
    """Summary of each env's episode, in env order."""
    env_s: float
    """Seconds in ``reset`` and ``step`` of the vector env."""


def play_round(
    venv: VectorEnvLike, act: ActFn, seeds: Sequence[int], *, on_step: StepHook | None = None
) -> RoundOutcome:
    """Play one episode in each of ``venv``'s environments (env ``i`` reset with ``seeds[i]``), in lockstep.

    Raises:
        RuntimeError: an environment became inactive without reporting its episode's summary.
    """
    started = time.perf_counter()
    reset = venv.reset(seeds)
    env_s = time.perf_counter() - started
    obs, masks = reset.obs, reset.masks
    episodes: list[EpisodeSummary | None] = [None] * venv.num_envs
    running = torch.ones(venv.num_envs, dtype=torch.bool)
    while bool(running.any()):
        actions = act(obs, masks)
        started = time.perf_counter()
        step = venv.step(actions)
        env_s += time.perf_counter() - started
        if on_step is not None:
            on_step(step)
        episodes = [old if new is None else new for old, new in zip(episodes, step.episodes, strict=True)]
        running &= ~(step.terminated | step.truncated)
        obs, masks = step.obs, step.masks
    finished = tuple(e for e in episodes if e is not None)
    if len(finished) != venv.num_envs:
        raise RuntimeError("an environment stopped being active without reporting its episode")
    return RoundOutcome(episodes=finished, env_s=env_s)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """One batched ``get_action`` call: what the policy was given and what it returned."""

    raw_obs: Observation
    """The raw CPU observation ``[N, ...]`` the env reported."""
    obs: Observation
    """The observation the policy saw: normalised (if a normaliser is set), on the policy's device."""
    masks: ActionMasks
    """The masks the policy saw, on its device."""
    result: ActionResult
    """What ``get_action`` returned."""


class PolicyActor:
    """A :class:`PolicyBundle` as an :data:`ActFn`: normalises, carries the hidden state, times itself.

    Args:
        policy: the bundle that acts.
        num_envs: batch of the round; the hidden state starts at ``policy.initial_hidden(num_envs)``.
        normalizer: applied (frozen: only ``normalize`` is called) before the policy sees an
            observation; None gives the policy raw observations (the heuristic's units).
        generator: sampling generator passed to ``get_action`` (None: the bundle's default RNG).
        deterministic: act greedily (evaluation).
    """

    def __init__(
        self,
        policy: PolicyBundle,
        num_envs: int,
        *,
        normalizer: ObservationNormalizer | None = None,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> None:
        self.policy = policy
        self.normalizer = normalizer
        self.generator = generator
        self.deterministic = deterministic
        self.hidden = policy.initial_hidden(num_envs)
        self.last: PolicyDecision | None = None
        """The latest decision (what a step hook stores as the transition)."""
        self.seconds = 0.0
        """Time in ``get_action``/``get_value`` incl. normalisation and device transfers."""

    def __call__(self, obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        started = time.perf_counter()
        policy_obs, policy_masks = self._policy_input(obs), masks.to(self.policy.device)
        result = self.policy.get_action(
            policy_obs, policy_masks, self.hidden, self.deterministic, generator=self.generator
        )
        self.hidden = result.hidden
        self.last = PolicyDecision(raw_obs=obs, obs=policy_obs, masks=policy_masks, result=result)
        actions = {h: a.cpu() for h, a in result.actions.items()}
        self.seconds += time.perf_counter() - started
        return actions

    def value(self, obs: Observation) -> torch.Tensor:
        """V(``obs``) ``[N]`` under the carried hidden state: the bootstrap value of a truncated step."""
        started = time.perf_counter()
        value = self.policy.get_value(self._policy_input(obs), self.hidden)
        self.seconds += time.perf_counter() - started
        return value

    def _policy_input(self, obs: Observation) -> Observation:
        features = obs.features if self.normalizer is None else self.normalizer.normalize(obs.features)
        device = self.policy.device
        return Observation(features.to(device), obs.blueprint_indices.to(device))


@dataclass(frozen=True, slots=True)
class RolloutResult:
    """What one training round of lockstep episodes produced, besides the filled buffer."""

    episodes: tuple[EpisodeSummary, ...]
    """Summary of each env's episode, in env order."""
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
    head_relevant_steps: Mapping[str, int]
    """Number of those steps per head (the weights when replicas' rollouts are merged)."""
    env_s: float
    """Seconds in ``reset`` and ``step`` of the vector env."""
    policy_s: float
    """Seconds in ``get_action``/``get_value`` (incl. observation normalisation and device transfers)."""


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
    actor = PolicyActor(policy, venv.num_envs, normalizer=obs_normalizer, generator=generator)
    buffer.reset(actor.hidden)
    raw_features: list[torch.Tensor] = []

    def store(step: VectorStep) -> None:
        decision = actor.last
        assert decision is not None
        if buffer.full:
            raise RuntimeError(
                f"episodes outlasted the rollout buffer ({buffer.num_steps} steps); the env's episode length "
                "and the buffer length must agree"
            )
        rewards = reward_normalizer.normalize(step.rewards, step.terminated | step.truncated, step.active)
        bootstrap = actor.value(step.obs) if bool((step.active & step.truncated).any()) else None
        buffer.add(
            obs=decision.obs,
            masks=decision.masks,
            result=decision.result,
            executed_op=step.executed_op,
            rewards=rewards,
            terminated=step.terminated,
            truncated=step.truncated,
            active=step.active,
            bootstrap_values=bootstrap,
        )
        raw_features.append(decision.raw_obs.features[step.active])

    outcome = play_round(venv, actor, seeds, on_step=store)
    batch, space = buffer.data(), buffer.action_space
    return RolloutResult(
        episodes=outcome.episodes,
        raw_features=torch.cat(raw_features),
        num_transitions=int(batch.valid.sum()),
        invalid_actions=invalid_actions(batch, space),
        executed_op_counts=executed_op_counts(batch, space),
        head_entropies=relevant_entropy_means(batch, space),
        head_relevant_steps={h: int(m.sum()) for h, m in relevant_steps(batch, space).items()},
        env_s=outcome.env_s,
        policy_s=actor.seconds,
    )


def executed_op_counts(batch: RolloutBatch, space: ActionSpace) -> tuple[int, ...]:
    """Count of each executed op index ``[num_ops]`` over the batch's valid steps."""
    return tuple(int(c) for c in torch.bincount(batch.executed_op[batch.valid], minlength=space.num_ops).tolist())


def invalid_actions(batch: RolloutBatch, space: ActionSpace) -> int:
    """Valid steps whose sampled action was invalid.

    The env executes an invalid action as WAIT, so "executed op != sampled op" is exactly "invalid".
    """
    return int((batch.valid & (batch.executed_op != batch.actions[space.op_head])).sum())


def relevant_steps(batch: RolloutBatch, space: ActionSpace) -> dict[str, torch.Tensor]:
    """Bool ``[N, T]`` per head: the valid steps where the sampled op made the head relevant."""
    relevant = space.relevance_masks(batch.actions[space.op_head])
    return {head: batch.valid & relevant[head] for head in space.head_names}


def merge_rollouts(parts: Sequence[RolloutResult]) -> RolloutResult:
    """Every replica's rollout as one round, for the report (episodes in global environment order).

    Counts add up, per-head entropies are weighted by their steps; the timings and the raw features
    are the first part's (rank 0's own: its wait for slower replicas is in the round's other time; the
    normaliser already has every replica's features).
    """
    first = parts[0]
    steps = {h: sum(p.head_relevant_steps[h] for p in parts) for h in first.head_relevant_steps}
    entropies: dict[str, float | None] = {}
    for head, count in steps.items():
        weighted = sum((p.head_entropies[head] or 0.0) * p.head_relevant_steps[head] for p in parts)
        entropies[head] = weighted / count if count else None
    return RolloutResult(
        episodes=tuple(e for p in parts for e in p.episodes),
        raw_features=first.raw_features,
        num_transitions=sum(p.num_transitions for p in parts),
        invalid_actions=sum(p.invalid_actions for p in parts),
        executed_op_counts=tuple(sum(c) for c in zip(*(p.executed_op_counts for p in parts), strict=True)),
        head_entropies=entropies,
        head_relevant_steps=steps,
        env_s=first.env_s,
        policy_s=first.policy_s,
    )


def relevant_entropy_means(batch: RolloutBatch, space: ActionSpace) -> dict[str, float | None]:
    """Mean rollout entropy of each head over the valid steps where the sampled op made it relevant.

    None for a head that was never relevant. Each step's sum over envs is added to a float32 total
    in step order: the float result then does not depend on the batch layout of the reduction.
    """
    means: dict[str, float | None] = {}
    for head, selected in relevant_steps(batch, space).items():
        total = torch.zeros((), device=selected.device)
        for t in range(batch.num_steps):
            total += torch.where(selected[:, t], batch.entropies[head][:, t], 0.0).sum()
        count = int(selected.sum())
        means[head] = float(total) / count if count else None
    return means


def op_count_names(counts: Sequence[int]) -> dict[str, int]:
    """``{op name: count}`` for the morphogenetic op head (generic index names for other spaces)."""
    names = [op.name for op in LifecycleOp] if len(counts) == len(LifecycleOp) else [str(i) for i in range(len(counts))]
    return dict(zip(names, counts, strict=True))
