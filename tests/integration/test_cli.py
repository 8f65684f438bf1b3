"""End-to-end runs of ``esper-train`` (in process through ``main(argv)``, plus one real console script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_distributions import make_distribution

from esper.simic import cli
from esper.simic.training import read_metrics
from esper.tamiyo.policy import PolicyInfo, PolicyRegistry

#: Small synthetic run options shared by most tests (the policy is shrunk to keep them sub-second).
TINY = [
    "--task",
    "synthetic",
    "--episode-length",
    "4",
    "--synthetic-train-size",
    "64",
    "--synthetic-val-size",
    "32",
    "--batch-size",
    "32",
]
TINY_POLICY = ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}']


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ppo_reference_command_writes_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = _run(
        [
            "ppo",
            "--episodes",
            "4",
            "--num-envs",
            "2",
            "--episode-length",
            "8",
            "--task",
            "synthetic",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint_last.pt",
        "config.json",
        "metrics.jsonl",
        "summary.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert (config["episodes"], config["num_envs"], config["env"]["episode_length"]) == (4, 2, 8)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [1, 2] and rows[-1]["episodes"] == 4
    assert {"mean_return", "mean_final_accuracy", "op_counts", "head_entropies", "update", "timings"} <= set(rows[0])
    assert json.loads((out / "summary.json").read_text())["rounds_completed"] == 2
    assert f"eval {out / 'checkpoint_last.pt'}" in stdout
    assert "round 2/2" in stderr and "\r" not in stderr


@pytest.mark.parametrize("policy", ["mlp", "example-gru"])
def test_ppo_trains_other_bundles_and_resumes_them(
    policy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / policy
    kwargs = TINY_POLICY if policy == "mlp" else []
    code, _, stderr = _run(
        ["ppo", "--policy", policy, "--rounds", "1", "--envs", "2", *TINY, *kwargs, "--out", str(out), "--quiet"],
        capsys,
    )
    assert code == 0, stderr
    assert stderr == ""
    code, _, stderr = _run(["ppo", "--resume", str(out / "checkpoint_last.pt"), "--rounds", "2", "--quiet"], capsys)
    assert code == 0, stderr
    assert [r["round"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert json.loads((out / "config.json").read_text())["policy"] == policy


def test_config_file_is_layered_under_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        'policy = "mlp"\nrounds = 5\nnum_envs = 2\n[policy_kwargs]\nhidden_size = 16\nlstm_hidden = 16\n'
        '[env]\ntask = "synthetic"\nepisode_length = 3\n'
    )
    code, _, stderr = _run(
        ["ppo", "--config", str(config), "--rounds", "1", "--quiet", "--out", str(tmp_path / "r")], capsys
    )
    assert code == 0, stderr
    resolved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (resolved["policy"], resolved["rounds"], resolved["env"]["episode_length"]) == ("mlp", 1, 3)


def test_heuristic_and_eval_print_tables_and_write_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "heuristic.json"
    code, stdout, stderr = _run(
        ["heuristic", "--episodes", "2", "--num-envs", "2", *TINY, "--out", str(report)], capsys
    )
    assert code == 0, stderr
    assert stdout.splitlines()[1].startswith("heuristic")
    assert json.loads(report.read_text())["rows"][0]["episodes"] == 2

    run = tmp_path / "run"
    assert (
        _run(["ppo", "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--out", str(run), "--quiet"], capsys)[0] == 0
    )
    code, stdout, stderr = _run(["eval", str(run / "checkpoint_last.pt"), "--episodes", "2", "--num-envs", "2"], capsys)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert [line.split("  ")[0] for line in lines[1:4]] == ["checkpoint (lstm)", "heuristic", "no-growth (WAIT)"]
    assert lines[-1] == f"wrote {run / 'eval.json'}"
    assert len(json.loads((run / "eval.json").read_text())["rows"]) == 3


def test_policies_lists_plugins_and_broken_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = _run(["policies"], capsys)
    assert code == 0
    names = [line.split()[0] for line in stdout.splitlines()]
    assert {"lstm", "mlp", "heuristic", "example-gru"} <= set(names)
    broken = PolicyInfo("bad-plugin", "bad-dist 1.0", "bad_mod:Bundle", "ImportError: no module named 'torchx'")
    monkeypatch.setattr(cli, "list_policies", lambda: (broken,))
    code, stdout, _ = _run(["policies"], capsys)
    assert code == 0
    assert "bad-plugin" in stdout and "BROKEN: ImportError: no module named 'torchx'" in stdout


def test_policies_survives_a_plugin_that_calls_sys_exit_at_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to print nothing and exit 0: the plugin's SystemExit ended the listing."""
    (tmp_path / "esper_exiting_plugin.py").write_text("import sys\nsys.exit()\n")
    make_distribution(tmp_path, "esper-exiting-plugin", {"exits": "esper_exiting_plugin:Bundle"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "esper_exiting_plugin", raising=False)
    monkeypatch.setattr(cli, "list_policies", PolicyRegistry().list_policies)
    code, stdout, _ = _run(["policies"], capsys)
    assert code == 0
    rows = {line.split()[0]: line for line in stdout.splitlines()}
    assert {"lstm", "mlp", "heuristic", "example-gru", "exits"} <= set(rows)
    assert rows["exits"].endswith("[BROKEN: SystemExit: the plugin called sys.exit(None) while being imported]")
    assert rows["lstm"].endswith("[ok]")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ppo", "--reward-mode", "nope"], "invalid choice: 'nope'"),
        (["ppo", "--task", "nope"], "invalid choice: 'nope'"),
        (["ppo", "--num-envs", "two"], "expected an integer, got 'two'"),
        (["ppo", "--policy-kwargs", "[1]"], "expected a JSON object"),
        (["ppo", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["ppo", "--num-envs", "0"], "num_envs must be >= 1"),
        (["ppo", "--rounds", "1", "--episodes", "2"], "not both"),
        (["ppo", "--config", "missing.toml"], "does not exist"),
        (["ppo", "--policy", "nope", *TINY], "unknown policy 'nope'. Known policies: "),
        (["ppo", "--policy", "heuristic", *TINY], "no trainable parameters"),
        (["ppo", "--task", "cifar10", "--data-dir", "/no/such/dir"], "does not exist"),
        (["eval", "missing.pt"], "does not exist"),
        (["eval", "."], "is a directory; pass a checkpoint file such as"),
        (["ppo", *TINY, "--out", "/dev/null"], "run directory '/dev/null' is an existing file"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_input_errors_print_one_line_and_exit_non_zero(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = _run(argv, capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("esper-train") and message in stderr
    assert "Traceback" not in stderr and stdout == ""


def test_an_unwritable_report_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["heuristic", "--episodes", "1", "--num-envs", "1", *TINY, "--out", str(tmp_path)]
    code, stdout, stderr = _run(argv, capsys)
    assert code == 2 and stdout.startswith("policy")  # the table was shown; only writing the JSON failed
    assert stderr.startswith("esper-train: error: ") and "Is a directory" in stderr and stderr.count("\n") == 1


def test_bad_config_keys_and_corrupt_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[env]\nepisode_lenght = 4\n")
    code, _, stderr = _run(["ppo", "--config", str(config)], capsys)
    assert code == 2 and "unknown config key(s) ['env.episode_lenght']" in stderr and stderr.count("\n") == 1
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    for argv in (["eval", str(corrupt)], ["ppo", "--resume", str(corrupt)]):
        code, _, stderr = _run(argv, capsys)
        assert code == 2 and "is corrupt or not a checkpoint" in stderr and stderr.count("\n") == 1


def test_incompatible_resume_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert (
        _run(["ppo", "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--out", str(run), "--quiet"], capsys)[0] == 0
    )
    code, _, stderr = _run(["ppo", "--resume", str(run / "checkpoint_last.pt"), "--rounds", "2", "--envs", "3"], capsys)
    assert code == 2 and "cannot resume" in stderr and "num_envs" in stderr and stderr.count("\n") == 1


def test_help_lists_generated_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(["ppo", "--help"], capsys)
    assert code == 0
    for flag in (
        "--episodes",
        "--num-envs INT, --envs INT",
        "--rounds",
        "--episode-length",
        "--policy",
        "--reward-mode",
        "--seed",
        "--device",
        "--compile-mode",
        "--resume",
        "--config",
        "--out",
        "--task",
        "--host",
        "--data-dir",
        "--slots",
        "--checkpoint-every",
        "--learning-rate",
        "--gamma",
    ):
        assert flag in stdout
    assert "Host epochs per episode" in stdout


@pytest.mark.slow
def test_console_script_is_installed() -> None:
    executable = shutil.which("esper-train")
    assert executable is not None
    result = subprocess.run([executable, "policies"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0 and "lstm" in result.stdout
    result = subprocess.run(
        [executable, "ppo", "--task", "nope"], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
