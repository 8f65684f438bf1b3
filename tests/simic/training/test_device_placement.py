"""``--device`` places the whole run: policy, hosts, seeds, optimisers and task data.

On a CPU-only machine the tests check the plumbing (every environment the trainer and ``eval``
build is asked for the run's device) and that a bare ``cuda`` means ``cuda:0``; where CUDA is
available, a tiny run trains and evaluates on it and every tensor of every environment is there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from esper.simic.env.vector import VectorEnv
from esper.simic.training import EvalConfig, TrainConfig, evaluate, evaluate_heuristic, evaluation, train, vectorized
from esper.simic.training.vectorized import resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class _RecordingVectorEnv(VectorEnv):
    """A :class:`VectorEnv` that remembers every instance and the device it was asked for.

    ``asked_for`` is None when the caller left the device to the default: on a CPU-only machine
    that is what tells a forgotten placement from a correct one.
    """

    built: ClassVar[list[_RecordingVectorEnv]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        asked_for = args[2] if len(args) > 2 else kwargs.get("device")
        self.asked_for = None if asked_for is None else torch.device(asked_for)  # type: ignore[arg-type]
        _RecordingVectorEnv.built.append(self)


@pytest.fixture
def built_envs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[_RecordingVectorEnv]]:
    """Every vector env the trainer and the evaluator build during the test."""
    _RecordingVectorEnv.built = []
    monkeypatch.setattr(vectorized, "VectorEnv", _RecordingVectorEnv)
    monkeypatch.setattr(evaluation, "VectorEnv", _RecordingVectorEnv)
    yield _RecordingVectorEnv.built


def _env_tensors(venv: VectorEnv) -> Iterator[torch.Tensor]:
    """Task data, and every parameter and buffer of every environment's host and seeds."""
    for env in venv.envs:
        yield from (env.data.train_x, env.data.train_y, env.data.val_x, env.data.val_y)
        yield from env.model.parameters()
        yield from env.model.buffers()


def _assert_on(venvs: list[_RecordingVectorEnv], device: torch.device) -> None:
    assert venvs
    for venv in venvs:
        assert venv.asked_for == device
        assert {env.device for env in venv.envs} == {device}
        assert {t.device for t in _env_tensors(venv)} == {device}


def test_a_bare_cuda_means_the_first_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["meta", "xla", "xla:0", "hpu"])
def test_devices_the_trainer_cannot_use_are_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match=f"device '{name}' cannot run Esper"):
        resolve_device(name)


def test_the_trainer_and_eval_build_every_environment_on_the_run_device(
    make_config: Callable[..., TrainConfig], tmp_path: Path, built_envs: list[_RecordingVectorEnv]
) -> None:
    train(make_config("run", rounds=1, device="cpu"))
    evaluate(tmp_path / "run" / "checkpoint_last.pt", EvalConfig(episodes=2, num_envs=2, costly_baselines=False))
    evaluate_heuristic(make_config().env, EvalConfig(episodes=1, num_envs=1))
    assert len(built_envs) == 3
    _assert_on(built_envs, torch.device("cpu"))


@needs_cuda
def test_a_cuda_run_trains_and_evaluates_with_every_host_on_the_gpu(
    make_config: Callable[..., TrainConfig], tmp_path: Path, built_envs: list[_RecordingVectorEnv]
) -> None:
    result = train(make_config("run", rounds=2, device="cuda"))
    assert result.policy.device == torch.device("cuda", 0)
    _assert_on(built_envs, torch.device("cuda", 0))
    built_envs.clear()
    config = EvalConfig(episodes=2, num_envs=2, device="cuda", costly_baselines=False)
    report = evaluate(tmp_path / "run" / "checkpoint_last.pt", config)
    assert all(row.stats.num_episodes == 2 for row in report.rows)
    _assert_on(built_envs, torch.device("cuda", 0))
