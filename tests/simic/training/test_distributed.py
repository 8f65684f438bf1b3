"""The single-process path of data-parallel training, and its split and seed arithmetic."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from esper.simic.agent import RewardNormalizer, RunningMeanStd
from esper.simic.agent.collectives import LOCAL, mean_over_replicas
from esper.simic.cli import COMMANDS, main
from esper.simic.launch import (
    LAUNCHED_BY_ESPER,
    LAUNCHER_PID,
    failure_line,
    report_error,
    root_failure,
    without_nproc,
    worker_command,
)
from esper.simic.training.distributed import (
    PEER_LOST,
    DistributedContext,
    DistributedError,
    distributed_context,
    peers_reachable,
    split_envs,
)
from esper.simic.training.rng import SAMPLER_STREAM, derive_seed
from esper.simic.training.rollout import RolloutResult, merge_rollouts


class TwoReplicas:
    """A fake second replica whose tensors are given: checks the merge arithmetic without a process group."""

    def __init__(self, other: list[torch.Tensor]):
        self.other = other

    @property
    def world_size(self) -> int:
        return 2

    def average_(self, tensors: list[torch.Tensor]) -> None:
        raise AssertionError("not used here")

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor, self.other.pop(0)]


def test_without_torchrun_variables_there_is_no_process_group() -> None:
    with distributed_context(torch.device("cpu"), timeout_s=1.0, environ={}) as ctx:
        assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.reduce) == (0, 1, True, LOCAL)
        assert not dist.is_initialized()
    with distributed_context(torch.device("cpu"), timeout_s=1.0, environ={"WORLD_SIZE": "1", "RANK": "0"}) as ctx:
        assert ctx.world_size == 1 and not dist.is_initialized()


def test_the_local_collectives_change_nothing() -> None:
    values = torch.tensor([0.25, -3.0])
    assert mean_over_replicas(values, LOCAL) is values
    grads = [torch.tensor([1.0, 2.0])]
    LOCAL.average_(grads)
    assert grads[0].tolist() == [1.0, 2.0]
    assert LOCAL.gather(values) == [values]


def test_environments_split_evenly_with_global_indices() -> None:
    assert split_envs(8, 4) == 2
    with pytest.raises(ValueError, match=r"^--num-envs 3 does not split evenly over 2 processes; use a multiple of 2$"):
        split_envs(3, 2)
    ctx = DistributedContext(torch.device("cpu"), rank=1, world_size=2)
    assert ctx.env_indices(4) == range(2, 4)
    assert DistributedContext(torch.device("cpu")).env_indices(4) == range(4)


def test_rank_0_keeps_the_single_process_streams_and_other_ranks_get_their_own() -> None:
    single, rank0 = DistributedContext(torch.device("cpu")), DistributedContext(torch.device("cpu"), world_size=2)
    rank1 = DistributedContext(torch.device("cpu"), rank=1, world_size=2)
    assert single.rank_seed(5, SAMPLER_STREAM) == rank0.rank_seed(5, SAMPLER_STREAM) == derive_seed(5, SAMPLER_STREAM)
    assert rank1.rank_seed(5, SAMPLER_STREAM) == derive_seed(5, SAMPLER_STREAM, 1) != derive_seed(5, SAMPLER_STREAM)


def test_merged_statistics_are_those_of_every_replicas_samples() -> None:
    mine, theirs = torch.tensor([[1.0, 2.0], [3.0, 6.0]]), torch.tensor([[5.0, -2.0]])
    other_moments = torch.cat([torch.tensor([1.0]), theirs.double().mean(0), torch.zeros(2, dtype=torch.float64)])
    merged = RunningMeanStd((2,))
    merged.update(mine, TwoReplicas([other_moments]))
    both = torch.cat([mine, theirs]).double()
    assert merged.count == 3
    torch.testing.assert_close(merged.mean, both.mean(0))
    torch.testing.assert_close(merged.var, both.var(0, correction=0))


def test_a_replica_without_samples_still_takes_the_others() -> None:
    merged = RunningMeanStd(())
    merged.update(torch.zeros(0), TwoReplicas([torch.tensor([2.0, 4.0, 1.0], dtype=torch.float64)]))
    assert (merged.count, float(merged.mean), float(merged.var)) == (2, 4.0, 1.0)


def test_the_reward_normaliser_merges_the_rounds_samples_at_its_end() -> None:
    other = torch.tensor([1.0, 3.0, 0.0], dtype=torch.float64)  # one sample, mean 3, var 0
    normaliser = RewardNormalizer(1, gamma=1.0, reduce=TwoReplicas([other]))
    normaliser.normalize(torch.tensor([1.0]), torch.tensor([True]))
    assert normaliser.stats.count == 1  # local until the round ends
    normaliser.end_round()
    assert (normaliser.stats.count, float(normaliser.stats.mean), float(normaliser.stats.var)) == (2, 2.0, 1.0)


def test_the_launcher_reexecutes_the_same_arguments_under_torchrun() -> None:
    argv = ["ppo", "--nproc-per-node", "2", "--rounds", "3", "--nproc-per-node=4", "--out", "x"]
    assert without_nproc(argv) == ["ppo", "--rounds", "3", "--out", "x"]
    command = worker_command(argv, 2)
    assert command == ["--standalone", "--nproc-per-node=2", "-m", "esper.simic", "ppo", "--rounds", "3", "--out", "x"]


def test_a_launched_worker_hands_its_error_line_to_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(reply))
    monkeypatch.setenv(LAUNCHED_BY_ESPER, "1")
    report_error("esper-train: error: unknown policy 'x'")
    assert capsys.readouterr().err == ""  # the launcher prints it, once for the whole job
    failure = ProcessFailure(local_rank=1, pid=123, exitcode=2, error_file=str(reply))
    assert failure_line(1, failure, "esper-train") == "esper-train: error: unknown policy 'x'"


def test_a_worker_under_the_users_own_torchrun_prints_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "error.json"))
    monkeypatch.delenv(LAUNCHED_BY_ESPER, raising=False)
    report_error("esper-train: error: bad")
    assert capsys.readouterr().err == "esper-train: error: bad\n"
    assert not (tmp_path / "error.json").exists()


def test_a_worker_that_left_no_line_is_named_with_its_rank(tmp_path: Path) -> None:
    killed = ProcessFailure(local_rank=1, pid=7, exitcode=-9, error_file=str(tmp_path / "none.json"))
    assert failure_line(1, killed, "esper-train") == "esper-train: error: worker 1 was killed by SIGKILL"
    crashed = ProcessFailure(local_rank=0, pid=8, exitcode=1, error_file=str(tmp_path / "none.json"))
    expected = "esper-train: error: worker 0 exited with status 1 (its output above says why)"
    assert failure_line(0, crashed, "esper-train") == expected


def test_no_workers_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ppo", "--nproc-per-node", "0", "--rounds", "1"]) == 2
    assert capsys.readouterr().err == "esper-train: error: --nproc-per-node must be >= 1, got 0\n"


def test_nccl_is_refused_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    environ = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    with (
        pytest.raises(ValueError, match=r"^the nccl backend needs CUDA, which is not available on this machine"),
        distributed_context(torch.device("cuda"), timeout_s=1.0, environ=environ),
    ):
        pass


@pytest.mark.slow  # waits out a 1 s rendezvous timeout
def test_a_rendezvous_that_never_completes_fails_within_the_timeout() -> None:
    with socket.socket() as probe:  # a free port nobody else will join
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    started = time.perf_counter()
    with (
        pytest.raises(DistributedError, match=r"^rank 0 of 2: the process group did not form within 1 s"),
        mock.patch.dict(os.environ, environ),
        distributed_context(torch.device("cpu"), timeout_s=1.0),
    ):
        pass
    assert time.perf_counter() - started < 30
    assert not dist.is_initialized()


def _rollout(steps: int, invalid: int, ops: tuple[int, ...], entropy: float | None, relevant: int) -> RolloutResult:
    return RolloutResult(
        episodes=(),
        raw_features=torch.zeros(steps, 3),
        num_transitions=steps,
        invalid_actions=invalid,
        executed_op_counts=ops,
        head_entropies={"op": 0.5, "slot": entropy},
        head_relevant_steps={"op": steps, "slot": relevant},
        env_s=float(steps),
        policy_s=0.1,
    )


def test_replicas_rollouts_make_one_report() -> None:
    merged = merge_rollouts([_rollout(4, 1, (3, 1), 0.2, 1), _rollout(6, 0, (5, 1), 0.7, 4)])
    assert (merged.num_transitions, merged.invalid_actions, merged.executed_op_counts) == (10, 1, (8, 2))
    assert merged.head_relevant_steps == {"op": 10, "slot": 5}
    assert merged.head_entropies["op"] == 0.5
    assert merged.head_entropies["slot"] == pytest.approx((0.2 * 1 + 0.7 * 4) / 5)
    assert merged.env_s == 4.0  # rank 0's own timings
    never = merge_rollouts([_rollout(2, 0, (2,), None, 0), _rollout(2, 0, (2,), None, 0)])
    assert never.head_entropies["slot"] is None


def test_an_uneven_split_is_refused_before_any_worker_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ppo", "--nproc-per-node", "2", "--num-envs", "3", "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert err == "esper-train: error: --num-envs 3 does not split evenly over 2 processes; use a multiple of 2\n"


GLOO_RESET = (
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:7872: "
    "Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the application."
)


def test_a_collective_whose_peer_is_gone_fails_in_one_line() -> None:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(DistributedError) as info, peers_reachable():
            raise RuntimeError(GLOO_RESET)
        assert str(info.value) == (
            f"rank 0 of 1: {PEER_LOST} (Read error [127.0.0.1]:7872: Connection reset by peer); "
            "the output of the process that stopped first says why"
        )
        with pytest.raises(RuntimeError, match=r"^mismatched sizes$"), peers_reachable():  # a bug keeps its traceback
            raise RuntimeError("mismatched sizes")
    finally:
        dist.destroy_process_group()


def _failure(tmp_path: Path, rank: int, exitcode: int, message: str | None) -> ProcessFailure:
    reply = tmp_path / f"reply{rank}.json"
    if message is not None:
        reply.write_text(json.dumps({"message": message, "timestamp": 100}))
    return ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=exitcode, error_file=str(reply))


def test_the_worker_that_failed_first_for_its_own_reason_is_reported(tmp_path: Path) -> None:
    lost = f"esper-train: error: rank 0 of 2: {PEER_LOST} (Connection reset by peer); ..."
    peer_lost, killed = _failure(tmp_path, 0, 2, lost), _failure(tmp_path, 1, -9, None)
    killed.timestamp = peer_lost.timestamp  # the same second, torchrun's resolution
    rank, failure = root_failure(ChildFailedError("esper.simic", {0: peer_lost, 1: killed}))
    assert (rank, failure_line(rank, failure, "esper-train")) == (
        1,
        "esper-train: error: worker 1 was killed by SIGKILL",
    )
    rank, failure = root_failure(ChildFailedError("esper.simic", {0: peer_lost}))
    assert (rank, failure) == (0, peer_lost)  # nothing else failed: the lost contact is the report


@pytest.mark.parametrize(
    ("launched", "err", "reply"),
    [(True, "", "esper-train: interrupted"), (False, "\nesper-train: interrupted\n", None)],
)
def test_ctrl_c_is_one_line_and_a_launched_worker_hands_it_to_the_launcher(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    launched: bool,
    err: str,
    reply: str | None,
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(COMMANDS, "policies", interrupted)
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "error.json"))
    monkeypatch.delenv(LAUNCHER_PID, raising=False)
    if launched:
        monkeypatch.setenv(LAUNCHED_BY_ESPER, "1")
    else:
        monkeypatch.delenv(LAUNCHED_BY_ESPER, raising=False)
    assert main(["policies"]) == 130
    assert capsys.readouterr().err == err
    written = tmp_path / "error.json"
    assert (json.loads(written.read_text())["message"] if written.exists() else None) == reply
