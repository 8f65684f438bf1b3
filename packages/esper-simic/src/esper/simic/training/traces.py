"""Episode traces: what each policy did at every step of every evaluation episode, and what followed.

A mean accuracy says how well a policy did, not what it did. A trace keeps, per policy, episode
and step: the executed op and the heads that mattered for it (the action space's relevance row),
every slot's stage, blueprint, alpha, contribution and parameters, the host's validation accuracy
and loss, the parameters and extra compute so far, and the reward's components. ``esper-train
eval`` writes them as one JSON line per step (``traces.jsonl``, keys ``policy``, ``episode``,
``seed``, ``step`` first).

Traces also answer whether a policy reads its observations at all: held-out episodes differ (other
reset seeds, so other data orders, initialisations and accuracy curves), so a policy that reacts to
what it sees plays different action sequences in different episodes. :func:`sequence_diversity`
is the share of distinct sequences among the episodes: 1/N for a policy that plays one fixed
script in all N episodes, 1 when no two episodes share a sequence.

A :class:`TraceRecorder` watches :func:`~esper.simic.training.rollout.play_round` through its act
function (the chosen head values) and its step hook (the step's info); it adds no loop of its own.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from esper.simic.env import SlotTrace, StepInfo, VectorStep
from esper.simic.training.atomic import write_atomic
from esper.simic.training.rollout import ActFn
from esper.simic.training.run_dir import strict_json
from esper.tamiyo.contract import ActionMasks, ActionSpace, LifecycleOp, Observation

TRACES_FILE = "traces.jsonl"
"""Name of the traces file ``esper-train eval`` writes next to its JSON report."""

StepAction = tuple[str, tuple[tuple[str, int], ...]]
"""One step's action as a sequence element: the executed op's name and its relevant heads' values, by head name."""


@dataclass(frozen=True, slots=True)
class StepTrace:
    """One step of one episode: the action as executed and the state after it."""

    step: int
    """Index of the step in its episode (0 for the first decision)."""
    epoch: int
    """Host epochs trained after the step (``step + 1``)."""
    op: str
    """Name of the executed op (WAIT when the chosen action was invalid)."""
    action_valid: bool
    """The chosen action was allowed (False: it ran as WAIT)."""
    heads: Mapping[str, int]
    """Chosen index of every head that mattered for the executed op, by head name (the op head excluded)."""
    slots: tuple[SlotTrace, ...]
    """Every slot's state after the step, in slot order."""
    val_accuracy: float
    """Validation accuracy (%) after the step's epoch."""
    val_loss: float
    """Validation loss after the step's epoch."""
    host_params: int
    """Parameters of the host network."""
    seed_params: int
    """Parameters of the seeds in the network after the step."""
    extra_compute: float
    """Extra training compute the seeds cost so far in the episode, in host-epochs."""
    reward: float
    """The step's reward (raw scale)."""
    reward_components: Mapping[str, float]
    """The reward split into its named components (their sum is ``reward``)."""

    @property
    def action(self) -> StepAction:
        """The step as an element of the episode's action sequence (op and relevant heads)."""
        return self.op, tuple(sorted(self.heads.items()))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EpisodeTrace:
    """Every step of one episode of one policy (the evaluation row holding it names the policy)."""

    episode: int
    """Index of the episode among the evaluation episodes (rows are paired by it)."""
    seed: int
    """Reset seed of the episode."""
    steps: tuple[StepTrace, ...]
    """The episode's steps in order."""

    @property
    def actions(self) -> tuple[StepAction, ...]:
        """The episode's action sequence: each step's executed op and relevant head values."""
        return tuple(step.action for step in self.steps)

    def lines(self, policy: str) -> list[dict[str, Any]]:
        """One JSON-able dict per step, ``policy``, ``episode``, ``seed`` and ``step`` first."""
        head = {"policy": policy, "episode": self.episode, "seed": self.seed}
        return [{**head, **step.to_json()} for step in self.steps]


def step_trace(step: int, info: StepInfo, chosen: Mapping[str, int], space: ActionSpace) -> StepTrace:
    """The trace of one env's step from its info and the head values chosen for it."""
    relevant = space.relevance[info.executed_op]
    heads = {
        head: chosen[head]
        for head, matters in zip(space.head_names, relevant, strict=True)
        if matters and head != space.op_head
    }
    return StepTrace(
        step=step,
        epoch=info.epoch,
        op=LifecycleOp(info.executed_op).name,
        action_valid=info.action_valid,
        heads=heads,
        slots=info.slots,
        val_accuracy=info.val_accuracy,
        val_loss=info.val_loss,
        host_params=info.host_params,
        seed_params=sum(slot.params for slot in info.slots),
        extra_compute=info.extra_compute,
        reward=info.reward_components.total,
        reward_components=info.reward_components.as_dict(),
    )


class TraceRecorder:
    """Records the traces of one policy's episodes, round by round.

    For each round: ``play_round(venv, recorder.watch(act, seeds), seeds, on_step=recorder.on_step)``.
    Episode indices continue from one round to the next in the order the rounds are played.

    Args:
        space: the env's action space (op names and relevance rows).
    """

    def __init__(self, space: ActionSpace) -> None:
        self.space = space
        self._finished: list[EpisodeTrace] = []
        self._seeds: tuple[int, ...] = ()
        self._first_episode = 0
        self._open: list[list[StepTrace] | None] = []
        self._chosen: Mapping[str, torch.Tensor] = {}

    def watch(self, act: ActFn, seeds: Sequence[int]) -> ActFn:
        """Start recording a round of ``len(seeds)`` episodes; returns ``act`` wrapped to remember its choices.

        Raises:
            RuntimeError: the previous round has an episode that has not ended.
        """
        if any(steps is not None for steps in self._open):
            raise RuntimeError("the previous round has an unfinished episode; play each round to its end")
        self._first_episode += len(self._seeds)
        self._seeds = tuple(seeds)
        self._open = [[] for _ in self._seeds]

        def remembering(obs: Observation, masks: ActionMasks) -> Mapping[str, torch.Tensor]:
            self._chosen = act(obs, masks)
            return self._chosen

        return remembering

    def on_step(self, step: VectorStep) -> None:
        """Record every active env's step; close the episodes that ended with it."""
        for i, info in enumerate(step.infos):
            steps = self._open[i]
            if info is None or steps is None:
                continue
            chosen = {head: int(values[i]) for head, values in self._chosen.items()}
            steps.append(step_trace(len(steps), info, chosen, self.space))
            if step.episodes[i] is not None:
                self._finished.append(EpisodeTrace(self._first_episode + i, self._seeds[i], tuple(steps)))
                self._open[i] = None

    @property
    def episodes(self) -> tuple[EpisodeTrace, ...]:
        """Traces of the episodes that have ended, by episode index."""
        return tuple(sorted(self._finished, key=lambda trace: trace.episode))


def sequence_diversity(sequences: Sequence[Sequence[StepAction]]) -> float:
    """Share of distinct action sequences among episodes: ``distinct sequences / episodes``.

    Equivalently ``1 − (episodes whose sequence repeats an earlier episode's) / episodes``: 1/N when
    all N episodes play the same sequence, 1 when no two do.

    Raises:
        ValueError: no episodes.
    """
    if not sequences:
        raise ValueError("sequence diversity needs at least one episode")
    return len({tuple(s) for s in sequences}) / len(sequences)


def modal_sequence(sequences: Sequence[Sequence[StepAction]]) -> tuple[StepAction, ...]:
    """The action sequence most episodes played (of equally common ones, the earliest episode's).

    Raises:
        ValueError: no episodes.
    """
    if not sequences:
        raise ValueError("a modal sequence needs at least one episode")
    played = [tuple(s) for s in sequences]
    return max(played, key=played.count)  # max keeps the first of equal counts


def write_traces(
    path: str | os.PathLike[str],
    policies: Iterable[tuple[str, Iterable[EpisodeTrace]]],
    *,
    tags: Mapping[str, Any] | None = None,
) -> Path:
    """Write each ``(policy, traces)`` pair's steps as JSON lines (non-finite floats as null), atomically.

    ``tags`` (e.g. ``{"round": 12}`` for a trace recorded while training) lead every line.
    Returns the path.
    """
    file = Path(path)
    head = dict(tags or {})
    text = "".join(
        strict_json({**head, **line}) + "\n"
        for policy, traces in policies
        for trace in traces
        for line in trace.lines(policy)
    )
    file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(file, text.encode("utf-8"))
    return file


def read_traces(path: str | os.PathLike[str]) -> dict[str, tuple[EpisodeTrace, ...]]:
    """The traces a :func:`write_traces` file holds: policy → its episodes by episode index, policies in file order.

    Keys a line holds beyond the known fields are ignored and ``null`` floats (non-finite when
    written) read back as NaN, so a file written by a later version that added fields still reads.

    Raises:
        ValueError: a line is not a step trace (names the file and line).
    """
    file = Path(path)
    steps: dict[str, dict[tuple[int, int], list[StepTrace]]] = {}
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            step = _step_from_json(data)
            episodes = steps.setdefault(str(data["policy"]), {})
            episodes.setdefault((int(data["episode"]), int(data["seed"])), []).append(step)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{str(file)!r} line {number} is not a step trace ({type(exc).__name__}: {exc})") from exc
    return {
        policy: tuple(EpisodeTrace(episode, seed, tuple(s)) for (episode, seed), s in sorted(episodes.items()))
        for policy, episodes in steps.items()
    }


def _step_from_json(data: Mapping[str, Any]) -> StepTrace:
    slots = tuple(SlotTrace(**{f.name: slot[f.name] for f in fields(SlotTrace)}) for slot in data["slots"])
    return StepTrace(
        step=int(data["step"]),
        epoch=int(data["epoch"]),
        op=str(data["op"]),
        action_valid=bool(data["action_valid"]),
        heads={str(head): int(value) for head, value in data["heads"].items()},
        slots=slots,
        val_accuracy=_float(data["val_accuracy"]),
        val_loss=_float(data["val_loss"]),
        host_params=int(data["host_params"]),
        seed_params=int(data["seed_params"]),
        extra_compute=_float(data["extra_compute"]),
        reward=_float(data["reward"]),
        reward_components={str(name): _float(value) for name, value in data["reward_components"].items()},
    )


def _float(value: Any) -> float:
    """A JSON number as a float; ``null`` (a non-finite value when written) as NaN."""
    return math.nan if value is None else float(value)
