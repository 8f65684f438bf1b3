"""Resume checks: the differing fields named by dotted path, and the overrides that end bit-identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from esper.simic.agent import PPOConfig
from esper.simic.training import RESUME_OVERRIDABLE, CheckpointError, TrainConfig
from esper.simic.training.resume import (
    ABSENT,
    check_resume_config,
    config_differences,
    describe_differences,
    resume_caveats,
)


def test_differences_are_leaves_named_by_dotted_path() -> None:
    saved = {"seed": 1, "rounds": 5, "env": {"host_lr": 0.02, "reward": {"weight": 1.0}}, "kw": {"a": 1}}
    current = {"seed": 1, "rounds": 9, "env": {"host_lr": 0.05, "reward": {"weight": 2.0}}, "kw": {"b": [1, 2]}}
    assert config_differences(saved, current) == [
        ("env.host_lr", 0.02, 0.05),
        ("env.reward.weight", 1.0, 2.0),
        ("kw.a", 1, ABSENT),
        ("kw.b", ABSENT, [1, 2]),
    ]


def test_at_most_five_differences_are_spelled_out() -> None:
    differences = config_differences({f"f{i}": i for i in range(8)}, {f"f{i}": i + 1 for i in range(8)})
    assert describe_differences(differences, saved_name="checkpoint") == (
        "f0: checkpoint 0 vs now 1; f1: checkpoint 1 vs now 2; f2: checkpoint 2 vs now 3; "
        "f3: checkpoint 3 vs now 4; f4: checkpoint 4 vs now 5; and 3 more"
    )
    assert describe_differences([("x", ABSENT, 3)], saved_name="checkpoint") == "x: checkpoint (absent) vs now 3"


def test_a_differing_resume_names_only_the_differing_fields() -> None:
    saved = TrainConfig(rounds=2).to_dict()
    config = TrainConfig(rounds=4, seed=7, ppo=PPOConfig(learning_rate=3e-3), policy_kwargs={"hidden_size": 8})
    with pytest.raises(CheckpointError) as info:
        check_resume_config(saved, config)
    assert str(info.value) == (
        "cannot resume: the config differs from the checkpoint's (policy_kwargs.hidden_size: checkpoint (absent) "
        "vs now 8; ppo.learning_rate: checkpoint 0.001 vs now 0.003; seed: checkpoint 42 vs now 7); only "
        "checkpoint_every, compile_mode, device, dist_timeout_s, episodes, keep_checkpoints, out_dir, rounds, "
        "trace_every may change"
    )


def test_num_threads_cannot_change_on_resume() -> None:
    """CPU float reductions split their sums by thread, so another count is another computation."""
    assert "num_threads" not in RESUME_OVERRIDABLE
    with pytest.raises(CheckpointError, match=r"\(num_threads: checkpoint 1 vs now 4\)"):
        check_resume_config(TrainConfig(num_threads=1).to_dict(), TrainConfig(num_threads=4))


def test_the_host_engine_cannot_change_on_resume() -> None:
    """The engines agree only to float rounding; a checkpoint without the field (before engines) reads as auto."""
    assert "engine" not in RESUME_OVERRIDABLE
    with pytest.raises(CheckpointError, match=r"\(engine: checkpoint 'loop' vs now 'batched'\)"):
        check_resume_config(TrainConfig(engine="loop").to_dict(), TrainConfig(engine="batched"))
    before_engines = {k: v for k, v in TrainConfig().to_dict().items() if k != "engine"}
    with pytest.raises(CheckpointError, match=r"engine: checkpoint \(absent\) vs now 'auto'"):
        check_resume_config(before_engines, TrainConfig())


@pytest.mark.parametrize(
    ("change", "notices"),
    [
        ({"rounds": 9, "checkpoint_every": 1, "keep_checkpoints": True, "out_dir": "elsewhere"}, []),
        ({"device": "cpu:0"}, []),
        (
            {"device": "cuda"},
            [
                "resuming with device 'cuda' where the checkpoint's run used 'cpu': the continuation is not "
                "bit-identical to an uninterrupted run"
            ],
        ),
        (
            {"compile_mode": "default"},
            [
                "resuming with compile_mode 'default' where the checkpoint's run used 'off': the continuation is "
                "not bit-identical to an uninterrupted run"
            ],
        ),
    ],
)
def test_overrides_that_change_the_arithmetic_are_announced(
    change: dict[str, Any], notices: list[str], make_config: Callable[..., TrainConfig]
) -> None:
    saved = make_config().to_dict()
    config = TrainConfig.from_dict({**saved, **change})
    check_resume_config(saved, config)
    assert resume_caveats(saved, config) == notices
