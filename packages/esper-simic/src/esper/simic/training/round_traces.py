"""Traces while training: every K rounds, one greedy episode of the current policy, step by step.

``eval`` shows what the final policy does; ``trace_every`` shows how that behaviour forms. Every
``trace_every`` rounds the trainer hands the policy (and its frozen observation statistics) to a
:class:`RoundTracer`, which plays one extra episode and writes its trace with
:func:`~esper.simic.training.traces.write_traces` to ``<run_dir>/traces/round_XXXX.jsonl``: the
lines of ``eval``'s ``traces.jsonl``, each led by ``"round"``.

The episode never touches training: it runs on its own one-env :class:`VectorEnv`, acts greedily
(no sampling generator), reads the observation normaliser without updating it, and plays inside
:func:`~esper.simic.training.rng.isolated_global_rngs`, which restores the global generators
afterwards. Its reset seed is fixed for the run (``TRACE_STREAM``, apart from every training and
evaluation seed), so consecutive traces differ only by what the policy learned in between. Its
seconds are not part of the round's timings.
"""

from __future__ import annotations

import re
from pathlib import Path

from esper.simic.agent import ObservationNormalizer
from esper.simic.env import VectorEnv
from esper.simic.training.config import TrainConfig
from esper.simic.training.rng import TRACE_STREAM, derive_seed, isolated_global_rngs
from esper.simic.training.rollout import PolicyActor, play_round
from esper.simic.training.traces import TraceRecorder, write_traces
from esper.tamiyo.policy import PolicyBundle

TRACES_DIR = "traces"
"""Folder of a run directory holding the traces recorded while training."""

_TRACE_FILE = re.compile(r"round_(\d{4,})\.jsonl")


def round_trace_name(round_index: int) -> str:
    """File name of the trace of round ``round_index`` (``round_0012.jsonl``)."""
    return f"round_{round_index:04d}.jsonl"


class RoundTracer:
    """Records one greedy episode every ``config.trace_every`` rounds into ``run_dir/traces``.

    Args:
        config: the run (its ``trace_every``, ``seed``, environment, gamma and policy name).
        run_dir: the run directory, locked by this run; None (no run directory, or a replica other than
            rank 0, which owns it): nothing is recorded.
    """

    def __init__(self, config: TrainConfig, run_dir: Path | None) -> None:
        self.every = config.trace_every
        self.folder = None if run_dir is None else run_dir / TRACES_DIR
        self.policy_name = f"{config.policy} (greedy)"
        self.seed = derive_seed(config.seed, TRACE_STREAM)
        self._env_config = config.env
        self._gamma = config.ppo.gamma
        self._venv: VectorEnv | None = None

    def due(self, round_index: int) -> bool:
        """Whether round ``round_index`` (1-based, just completed) is traced."""
        return self.folder is not None and self.every > 0 and round_index % self.every == 0

    def drop_after(self, round_index: int) -> None:
        """Remove traces of rounds after ``round_index``: a crash wrote them after the checkpoint being
        resumed (the rounds redone write theirs again), as ``metrics.jsonl`` drops their lines."""
        if self.folder is None or not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            match = _TRACE_FILE.fullmatch(path.name)
            if match is not None and int(match[1]) > round_index:
                path.unlink()

    def after_round(self, round_index: int, policy: PolicyBundle, normalizer: ObservationNormalizer) -> Path | None:
        """Called after each round: if the round is :meth:`due`, play the traced episode with ``policy``
        and write it; returns the trace file (None when the round is not traced)."""
        if self.folder is None or not self.due(round_index):
            return None
        seeds = [self.seed]
        with isolated_global_rngs(self.seed, policy.device):
            if self._venv is None:  # built inside the isolation too: building an env may draw
                self._venv = VectorEnv(self._env_config, 1, gamma=self._gamma)
            recorder = TraceRecorder(self._venv.action_space)
            actor = PolicyActor(policy, 1, normalizer=normalizer, deterministic=True)
            play_round(self._venv, recorder.watch(actor, seeds), seeds, on_step=recorder.on_step)
        path = self.folder / round_trace_name(round_index)
        return write_traces(path, [(self.policy_name, recorder.episodes)], tags={"round": round_index})
