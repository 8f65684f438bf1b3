"""The baselines a reviewer asks for, as act functions and fixed architectures for evaluation.

Each baseline answers one question about the learned policy (README, "Evaluation"):

- **no growth** (:func:`no_growth_actor`): is growing better than the impaired host alone?
- **random** (:class:`RandomActor`): is the policy better than choosing among the valid actions at
  random? Uniform over the op mask first, then over the chosen op's slot row and the other heads
  the op uses, so every action is valid.
- **fixed schedule** (:func:`fixed_schedule_actor`): is it better than the simplest script, grow
  every slot as early as the masks allow with one blueprint, fossilize as soon as allowed?
- **open loop** (:func:`open_loop_actor`): does it read the state, or did it find a good script?
  Its own most common action sequence, replayed blind in every episode, is the strongest fixed
  schedule a reviewer can name for it: a policy that only found a script ties it.
- **static** (:func:`static_architectures`): is *growing* the network better than training the
  network the policy ended with from epoch 0?
- **widened host** (:func:`widened_architectures`, :func:`charge_host_growth`): is it better than a
  plain host with as many parameters?

The static and widened baselines play WAIT in an environment reset with a fixed architecture
(:class:`FixedArchitectureEnvs`). Their cost is charged with the objective's own formula and
prices: static seeds cost their parameters every epoch (the environment's accounting), a widened
host costs its extra parameters every epoch (charged here, as the environment counts seeds only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch

from esper.simic.env import (
    EpisodeSummary,
    HostPreset,
    ObjectiveConfig,
    VectorEnv,
    VectorReset,
    VectorStep,
    epoch_compute,
    objective_value,
)
from esper.simic.env.architecture import FixedArchitecture
from esper.simic.env.hosts import host_param_count, widened_preset
from esper.simic.training.rollout import ActFn
from esper.simic.training.traces import StepAction
from esper.tamiyo.contract import ActionMasks, ActionSpace, BlueprintAction, LifecycleOp, Observation


def wait_actions(masks: ActionMasks, space: ActionSpace) -> dict[str, torch.Tensor]:
    """The no-growth action for every env: op WAIT, every other head at its canonical placeholder."""
    actions = {head: space.canonical_action(head, masks.heads[head]) for head in space.head_names}
    actions[space.op_head] = torch.full_like(actions[space.op_head], int(LifecycleOp.WAIT))
    return actions


def no_growth_actor(space: ActionSpace) -> ActFn:
    """The no-growth baseline as an act function: :func:`wait_actions` whatever the envs observe."""
    return lambda obs, masks: wait_actions(masks, space)


def _uniform_index(mask: torch.Tensor, generator: torch.Generator) -> int:
    """A uniformly drawn index among the True entries of the bool row ``mask`` ``[n]``."""
    return int(torch.multinomial(mask.to(torch.float32), 1, generator=generator))


class RandomActor:
    """Uniformly random *valid* actions: the op from the op mask, then its slot row and the heads it uses.

    Heads the op does not use take their canonical placeholder. Env ``i`` draws from
    ``generators[i]`` only, so an episode's actions do not depend on how episodes are batched.
    """

    def __init__(self, space: ActionSpace, generators: Sequence[torch.Generator]) -> None:
        self.space = space
        self.generators = tuple(generators)

    def __call__(self, obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        del obs
        space = self.space
        if masks.slot_by_op is None or space.slot_head is None:
            raise ValueError("the random baseline needs op-conditioned slot masks (slot_by_op)")
        actions = wait_actions(masks, space)
        for i, generator in enumerate(self.generators):
            op = _uniform_index(masks.heads[space.op_head][i], generator)
            actions[space.op_head][i] = op
            for head in space.head_names:
                if head == space.op_head or not space.is_relevant(op, head):
                    continue
                row = masks.slot_by_op[i, op] if head == space.slot_head else masks.heads[head][i]
                actions[head][i] = _uniform_index(row, generator)
        return actions


def fixed_schedule_actor(space: ActionSpace, blueprint: BlueprintAction, slot: int | None = None) -> ActFn:
    """Germinate ``blueprint`` in the first free slot whenever GERMINATE is allowed, else fossilize the
    first seed FOSSILIZE is allowed for, else WAIT; never prunes.

    Growth comes first when both are allowed (one op per epoch), so every slot grows as early as the
    masks allow. With ``slot`` (an index in slot-head order) only that slot ever grows: one seed,
    germinated as early as allowed (the single-seed schedules ``scripts/bench_benchmark.py`` compares).
    Style, tempo and alpha target stay at their placeholders (sigmoid add, standard tempo, full alpha).
    """
    slot_head = space.slot_head
    if slot_head is None:
        raise ValueError("the fixed schedule needs an action space with a slot head")

    def act(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        del obs
        assert masks.slot_by_op is not None
        actions = wait_actions(masks, space)
        ops = masks.heads[space.op_head]
        for i in range(ops.shape[0]):
            for op in (LifecycleOp.GERMINATE, LifecycleOp.FOSSILIZE):
                slots = masks.slot_by_op[i, op]
                if op == LifecycleOp.GERMINATE and slot is not None:
                    slots = slots & (torch.arange(slots.shape[0]) == slot)
                if bool(ops[i, op]) and bool(slots.any()):
                    actions[space.op_head][i] = int(op)
                    actions[slot_head][i] = int(slots.to(torch.int8).argmax())
                    if op == LifecycleOp.GERMINATE:
                        actions["blueprint"][i] = int(blueprint)
                    break
        return actions

    return act


def open_loop_actor(space: ActionSpace, script: Sequence[StepAction]) -> ActFn:
    """Play ``script[t]`` at step ``t`` in every env, whatever they observe; WAIT where the masks refuse
    it or the script has ended.

    ``script`` is an episode's action sequence from its trace (op name and relevant head values). The
    actor counts steps from its creation, so make one per batch of episodes started together.
    """
    slot_head, op_head = space.slot_head, space.op_head
    step = 0

    def allowed(masks: ActionMasks, i: int, op: int, heads: tuple[tuple[str, int], ...]) -> bool:
        if not bool(masks.heads[op_head][i, op]):
            return False
        for head, value in heads:
            by_op = head == slot_head and masks.slot_by_op is not None
            row = masks.slot_by_op[i, op] if by_op else masks.heads[head][i]  # type: ignore[index]
            if not bool(row[value]):
                return False
        return True

    def act(obs: Observation, masks: ActionMasks) -> dict[str, torch.Tensor]:
        nonlocal step
        del obs
        actions = wait_actions(masks, space)
        if step < len(script):
            op_name, heads = script[step]
            op = int(LifecycleOp[op_name])
            for i in range(actions[op_head].shape[0]):
                if allowed(masks, i, op, heads):
                    actions[op_head][i] = op
                    for head, value in heads:
                        actions[head][i] = value
        step += 1
        return actions

    return act


class FixedArchitectureEnvs:
    """A :class:`VectorEnv` whose env ``i`` starts every episode with ``architectures[i]`` (static baselines)."""

    def __init__(self, venv: VectorEnv, architectures: Sequence[FixedArchitecture]) -> None:
        if len(architectures) != venv.num_envs:
            raise ValueError(f"need one architecture per environment ({venv.num_envs}), got {len(architectures)}")
        self.venv = venv
        self.architectures = tuple(architectures)

    @property
    def num_envs(self) -> int:
        return self.venv.num_envs

    def reset(self, seeds: Sequence[int]) -> VectorReset:
        return self.venv.reset(seeds, architectures=self.architectures)

    def step(self, actions: Mapping[str, torch.Tensor]) -> VectorStep:
        return self.venv.step(actions)


def static_architectures(learned: Sequence[EpisodeSummary]) -> tuple[FixedArchitecture, ...]:
    """Each learned episode's final network (its seeds, fully blended) as an architecture built at reset."""
    return tuple(FixedArchitecture.from_final_network(e.final_blueprints, e.final_algorithms) for e in learned)


@dataclasses.dataclass(frozen=True, slots=True)
class HostShape:
    """What sizing a host needs: its topology, width preset and the task's input and class counts."""

    topology: str
    preset: HostPreset
    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def num_params(self) -> int:
        """Parameters of the host with the preset's widths."""
        return host_param_count(self.topology, self.preset, input_shape=self.input_shape, num_classes=self.num_classes)

    def widened_to(self, target_params: int) -> HostPreset:
        """The preset widened to the parameter count closest to ``target_params``."""
        return widened_preset(
            self.topology, self.preset, target_params, input_shape=self.input_shape, num_classes=self.num_classes
        )


def widened_architectures(
    learned: Sequence[EpisodeSummary], hosts: Sequence[HostShape]
) -> tuple[FixedArchitecture, ...]:
    """A seedless host per learned episode, ``hosts[i]`` widened to episode i's final parameter count (host + seeds).

    One host per episode, because a varied task draws each episode's host.
    """
    if len(hosts) != len(learned):
        raise ValueError(f"need one host per episode ({len(learned)}), got {len(hosts)}")
    return tuple(
        FixedArchitecture(host_widths=host.widened_to(e.host_params + e.seed_params).widths)
        for e, host in zip(learned, hosts, strict=True)
    )


def charge_host_growth(episode: EpisodeSummary, base_host_params: int, prices: ObjectiveConfig) -> EpisodeSummary:
    """``episode`` with a widened host's extra parameters charged like seeds: every epoch, and in the objective.

    The environment counts seed parameters only; the widened host's extra parameters are added to
    ``extra_compute`` (their share of the base host, each epoch trained) and priced in ``objective``.
    """
    extra = episode.host_params - base_host_params
    compute = episode.extra_compute + episode.length * epoch_compute(extra, base_host_params)
    objective = objective_value(episode.final_accuracy, episode.seed_params + extra, compute, prices)
    return dataclasses.replace(episode, extra_compute=compute, objective=objective)
