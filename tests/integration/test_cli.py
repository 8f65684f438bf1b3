"""End-to-end runs of ``esper-train`` (in process through ``main(argv)``, plus one real console script)."""

from __future__ import annotations

import errno
import json
import os
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_flags import TINY_POLICY, run_cli, tiny_task
from plugin_distributions import make_distribution

from esper.simic import cli
from esper.simic.training import RunDirectory, read_metrics
from esper.tamiyo.policy import PolicyInfo, PolicyRegistry

#: Small synthetic run options shared by most tests (the policy is shrunk to keep them sub-second).
TINY = tiny_task()


def test_ppo_reference_command_writes_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
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
        "run.lock",
        "summary.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert (config["episodes"], config["num_envs"], config["env"]["episode_length"]) == (4, 2, 8)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [1, 2] and rows[-1]["episodes"] == 4
    assert {"mean_objective", "mean_discounted_return", "mean_final_accuracy", "op_counts", "timings"} <= set(rows[0])
    assert json.loads((out / "summary.json").read_text())["rounds_completed"] == 2
    assert f"eval {out / 'checkpoint_last.pt'}" in stdout
    assert "round 2/2" in stderr and "\r" not in stderr


@pytest.mark.parametrize("policy", ["mlp", "example-gru"])
def test_ppo_trains_other_bundles_and_resumes_them(
    policy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / policy
    kwargs = TINY_POLICY if policy == "mlp" else []
    code, _, stderr = run_cli(
        ["ppo", "--policy", policy, "--rounds", "1", "--envs", "2", *TINY, *kwargs, "--out", str(out), "--quiet"],
        capsys,
    )
    assert code == 0, stderr
    assert stderr == ""
    code, _, stderr = run_cli(["ppo", "--resume", str(out / "checkpoint_last.pt"), "--rounds", "2", "--quiet"], capsys)
    assert code == 0, stderr
    assert [r["round"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert json.loads((out / "config.json").read_text())["policy"] == policy


def test_config_file_is_layered_under_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        'policy = "mlp"\nrounds = 5\nnum_envs = 2\n[policy_kwargs]\nhidden_size = 16\nlstm_hidden = 16\n'
        '[env]\ntask = "synthetic"\nepisode_length = 3\n'
    )
    code, _, stderr = run_cli(
        ["ppo", "--config", str(config), "--rounds", "1", "--quiet", "--out", str(tmp_path / "r")], capsys
    )
    assert code == 0, stderr
    resolved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (resolved["policy"], resolved["rounds"], resolved["env"]["episode_length"]) == ("mlp", 1, 3)


def test_nested_flags_and_their_old_spellings_reach_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        "[env.reward]\ngovernor_penalty = 3.0\n[env.objective]\nparam_price = 0.3\n[env.governor]\npatience = 4\n"
    )
    argv = ["ppo", "--config", str(config), "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--quiet"]
    flags = [
        "--reward-governor-penalty",
        "5",
        "--host-lr",
        "0.05",
        "--seed-training-lr",
        "0.03",
        "--training-dwell",
        "2",
    ]
    code, _, stderr = run_cli(
        [*argv, *flags, "--no-auto-advance", "--gamma", "0.9", "--out", str(tmp_path / "r")], capsys
    )
    assert code == 0, stderr
    env = json.loads((tmp_path / "r" / "config.json").read_text())["env"]
    assert (env["reward"]["governor_penalty"], env["objective"]["param_price"], env["governor"]["patience"]) == (
        5.0,
        0.3,
        4,
    )
    assert (env["host_training"]["lr"], env["host_training"]["batch_size"], env["seed_training"]["lr"]) == (
        0.05,
        32,
        0.03,
    )
    assert (env["lifecycle"]["training_dwell"], env["lifecycle"]["auto_advance"]) == (2, False)
    assert "gamma" not in env


def test_heuristic_and_eval_print_tables_and_write_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "heuristic.json"
    code, stdout, stderr = run_cli(
        ["heuristic", "--episodes", "2", "--num-envs", "2", *TINY, "--out", str(report)], capsys
    )
    assert code == 0, stderr
    assert stdout.splitlines()[1].startswith("heuristic")
    assert json.loads(report.read_text())["rows"][0]["episodes"] == 2

    run = tmp_path / "run"
    assert (
        run_cli(["ppo", "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--out", str(run), "--quiet"], capsys)[0]
        == 0
    )
    checkpoint = str(run / "checkpoint_last.pt")
    code, stdout, stderr = run_cli(["eval", checkpoint, "--episodes", "2", "--num-envs", "2"], capsys)
    assert code == 0, stderr
    lines = stdout.splitlines()
    cheap = ["checkpoint (lstm)", "checkpoint (lstm), sampled", "heuristic", "no-growth (WAIT)", "random valid policy"]
    assert [line.split("  ")[0] for line in lines[1:6]] == cheap
    assert lines[6].startswith("fixed schedule (best: ") and len(lines) == 13  # header, 9 rows, footer, 2 "wrote"
    assert lines[7].startswith("learned script, open loop")
    assert lines[10].startswith("distinct action sequences / episodes")
    assert lines[-1] == f"wrote {run / 'eval.json'}"
    data = json.loads((run / "eval.json").read_text())
    assert len(data["rows"]) == 9 and len(data["fixed_schedules"]) == 6  # one per mlp blueprint
    code, stdout, stderr = run_cli(["eval", checkpoint, "--episodes", "2", "--no-costly-baselines"], capsys)
    assert code == 0, stderr
    assert [line.split("  ")[0] for line in stdout.splitlines()[1:-3]] == cheap  # then footer, 2 "wrote"
    assert json.loads((run / "eval.json").read_text())["fixed_schedules"] == []


def test_the_varied_benchmark_trains_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--task digits-varied``: a tiny run, then eval with every baseline on episodes with different hosts."""
    run = tmp_path / "run"
    tiny = ["--task", "digits-varied", "--episode-length", "2", "--batch-size", "600", *TINY_POLICY]
    code, _, stderr = run_cli(["ppo", "--rounds", "1", "--envs", "2", *tiny, "--out", str(run), "--quiet"], capsys)
    assert code == 0, stderr
    assert read_metrics(run / "metrics.jsonl")[0]["episodes"] == 2
    code, _, stderr = run_cli(["eval", str(run / "checkpoint_last.pt"), "--episodes", "2", "--num-envs", "2"], capsys)
    assert code == 0, stderr
    data = json.loads((run / "eval.json").read_text())
    assert data["env"]["task"] == "digits-varied" and len(data["rows"]) == 9
    widened = data["rows"][-1]
    assert widened["policy"] == "widened host, same params"


def test_policies_lists_plugins_and_broken_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = run_cli(["policies"], capsys)
    assert code == 0
    names = [line.split()[0] for line in stdout.splitlines()]
    assert {"lstm", "mlp", "heuristic", "example-gru"} <= set(names)
    broken = PolicyInfo("bad-plugin", "bad-dist 1.0", "bad_mod:Bundle", "ImportError: no module named 'torchx'")
    monkeypatch.setattr(cli, "list_policies", lambda: (broken,))
    code, stdout, _ = run_cli(["policies"], capsys)
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
    code, stdout, _ = run_cli(["policies"], capsys)
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
        (["ppo", "--task", "digits-varied", "--host", "cnn"], "draws an impaired mlp host per episode"),
        (["ppo", "--num-envs", "two"], "expected an integer, got 'two'"),
        (["ppo", "--policy-kwargs", "[1]"], "expected a JSON object"),
        (["ppo", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["ppo", "--num-envs", "0"], "num_envs must be >= 1"),
        (["ppo", "--rounds", "1", "--episodes", "2"], "not both"),
        (["ppo", "--config", "missing.toml"], "does not exist"),
        (["ppo", "--policy", "nope", *TINY], "unknown policy 'nope'. Known policies: "),
        (["ppo", "--policy", "heuristic", *TINY], "no trainable parameters"),
        (["ppo", "--task", "cifar10", "--data-dir", "/no/such/dir"], "does not exist"),
        (["ppo", "--slots", "r0c1", "r0c01"], "slot ids 'r0c1' and 'r0c01' both name row 0, column 1"),
        (["eval", "missing.pt"], "does not exist"),
        (["eval", "."], "is a directory; pass a checkpoint file such as"),
        (["ppo", *TINY, "--out", "/dev/null"], "run directory '/dev/null' is an existing file"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["ppo", "--host-lr", "1e39"], "host_training.lr must be within float32's range (|x| <= 3.403e+38), got 1e+39"),
        (["ppo", "--host-training-lr", "1e39"], "host_training.lr must be within float32's range"),
        (["ppo", "--entropy-coef", "1e39"], "entropy_coef must be within float32's range"),
        (["ppo", "--entropy-coef-end", "0.01"], "an entropy anneal needs both entropy_coef_end and entropy_anneal"),
        (["heuristic", "--reward-governor-penalty=-1e39"], "reward.governor_penalty must be within float32's range"),
        (["ppo", "--governor-min-samples", "12"], "governor.min_samples (12) must be <= governor.window (10)"),
        (["ppo", "--device", "meta"], "device 'meta' cannot run Esper (supported: cpu, cuda, cuda:N, mps)"),
        (["ppo", "--device", "xla"], "device 'xla' cannot run Esper"),
        (["heuristic", "--device", "meta"], "device 'meta' cannot run Esper"),
        (["eval", "missing.pt", "--device", "xla:1"], "device 'xla:1' cannot run Esper"),
        (["ppo", "--num-envs", "10000000"], "num_envs must be <= 4096, got 10000000"),
        (["ppo", "--episode-length", "100000000"], "episode_length must be <= 10000, got 100000000"),
        (["ppo", *TINY, "--policy-kwargs", '{"hidden_size": 100000000}'], "hidden_size must be <= 8192, got 100000000"),
        (["eval", "missing.pt", "--episodes", "100000000"], "episodes must be <= 10000, got 100000000"),
    ],
)
def test_input_errors_print_one_line_and_exit_non_zero(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("esper-train") and message in stderr
    assert "Traceback" not in stderr and stdout == ""


def test_a_huge_size_in_a_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Used to be an out-of-memory kill with nothing printed: bounds are checked before anything is built."""
    config = tmp_path / "huge.toml"
    config.write_text("num_envs = 99999999999999999999\n")
    code, stdout, stderr = run_cli(["ppo", "--config", str(config), "--out", str(tmp_path / "run")], capsys)
    assert (code, stdout) == (2, "")
    assert stderr == "esper-train: error: num_envs must be <= 4096, got 99999999999999999999\n"
    assert not (tmp_path / "run").exists()


def test_printed_hints_quote_their_paths_for_the_shell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hint pasted into a shell must name the same path: ``--out "my run ✓"`` used to print it bare."""
    out = tmp_path / "my run ✓" / "it's here"
    argv = ["ppo", "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--quiet", "--out", str(out)]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr
    hint = next(line for line in stdout.splitlines() if line.startswith("compare with the heuristic: "))
    assert shlex.split(hint.split(": ", 1)[1]) == ["esper-train", "eval", str(out / "checkpoint_last.pt")]
    code, _, stderr = run_cli(argv, capsys)  # a fresh start over the finished run: told how to continue it
    assert code == 2 and "continue it with --resume " in stderr
    resume = stderr.split("continue it with --resume ", 1)[1].split(" (or --resume auto)")[0]
    assert shlex.split(resume) == [str(out / "checkpoint_last.pt")]

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_study", interrupted)
    code, stdout, _ = run_cli(["study", *TINY, "--seeds", "2", "--out", str(out)], capsys)
    assert code == 130 and stdout.startswith("study directory: ")
    assert shlex.split(stdout.splitlines()[0].split("the same command with --out ", 1)[1][:-1]) == [str(out)]


@pytest.mark.parametrize(
    ("flags", "blocked"),
    [
        (["--out", "{file}/eval.json"], "{file}/eval.json"),
        (["--traces", "{file}/sub/traces.jsonl"], "{file}/sub/traces.jsonl"),
        ([], "{run}/eval.json"),  # the default report path is an existing directory
    ],
)
def test_eval_checks_that_it_can_write_its_outputs_before_playing(
    flags: list[str], blocked: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Used to play every episode first, then fail to write the report."""
    run, file = tmp_path / "run", tmp_path / "a-file"
    (run / "eval.json" if not flags else run).mkdir(parents=True)
    (run / "checkpoint_last.pt").write_bytes(b"never read")
    file.write_text("a regular file, not a directory\n")

    def evaluate(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluate() must not run when an output cannot be written")

    monkeypatch.setattr(cli, "evaluate", evaluate)
    names = {"file": str(file), "run": str(run)}
    argv = ["eval", str(run / "checkpoint_last.pt"), *[flag.format(**names) for flag in flags]]
    code, stdout, stderr = run_cli(argv, capsys)
    assert (code, stdout) == (2, "")
    assert stderr.startswith(f"esper-train: error: cannot write {blocked.format(**names)!r}: ")
    assert stderr.count("\n") == 1


def test_an_unwritable_report_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["heuristic", "--episodes", "1", "--num-envs", "1", *TINY, "--out", str(tmp_path)]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 2 and stdout.startswith("policy")  # the table was shown; only writing the JSON failed
    assert stderr.startswith("esper-train: error: ") and "Is a directory" in stderr and stderr.count("\n") == 1


def test_bad_config_keys_and_corrupt_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[env]\nepisode_lenght = 4\n")
    code, _, stderr = run_cli(["ppo", "--config", str(config)], capsys)
    assert code == 2 and "unknown config key(s) ['env.episode_lenght']" in stderr and stderr.count("\n") == 1
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    for argv in (["eval", str(corrupt)], ["ppo", "--resume", str(corrupt)]):
        code, _, stderr = run_cli(argv, capsys)
        assert code == 2 and "is corrupt or not a checkpoint" in stderr and stderr.count("\n") == 1


def test_incompatible_resume_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert (
        run_cli(["ppo", "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--out", str(run), "--quiet"], capsys)[0]
        == 0
    )
    code, _, stderr = run_cli(
        ["ppo", "--resume", str(run / "checkpoint_last.pt"), "--rounds", "2", "--envs", "3"], capsys
    )
    assert code == 2 and stderr.count("\n") == 1
    assert "cannot resume: the config differs from the checkpoint's (num_envs: checkpoint 2 vs now 3); only " in stderr
    assert len(stderr) < 250  # the differing field, not both whole env tables


def test_the_default_run_directory_is_never_shared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs started in the same second used to write into one directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.time, "strftime", lambda _: "ppo-20260101-120000")
    argv = ["ppo", "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--quiet"]
    outputs = [run_cli(argv, capsys) for _ in range(2)]
    assert [code for code, _, _ in outputs] == [0, 0]
    assert [stdout.splitlines()[0] for _, stdout, _ in outputs] == [
        "run directory: runs/ppo-20260101-120000",
        "run directory: runs/ppo-20260101-120000-2",
    ]
    for run in ("ppo-20260101-120000", "ppo-20260101-120000-2"):
        assert [r["round"] for r in read_metrics(tmp_path / "runs" / run / "metrics.jsonl")] == [1]
    code, _, stderr = run_cli(["ppo", "--policy", "nope", *TINY], capsys)
    assert code == 2 and "unknown policy 'nope'" in stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ppo-20260101-120000", "ppo-20260101-120000-2"]


def test_resume_auto_starts_or_continues_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["ppo", "--resume", "auto", "--out", str(out), "--quiet"]
    assert run_cli([*argv, "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY], capsys)[0] == 0
    code, _, stderr = run_cli([*argv, "--rounds", "2"], capsys)
    assert code == 0, stderr
    assert [r["round"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    code, _, stderr = run_cli(argv, capsys)  # nothing left: no file changes, and the run says so
    assert code == 0 and stderr.startswith(f"note: {str(out / 'checkpoint_last.pt')!r} already has all 2 rounds")
    code, _, stderr = run_cli(["ppo", "--resume", "auto"], capsys)
    assert code == 2
    assert stderr == "esper-train: error: resume 'auto' needs the run directory to continue (--out DIR / out_dir)\n"


def test_run_directory_conflicts_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ppo", "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--quiet", "--out"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}\n")
    busy = RunDirectory(tmp_path / "busy")
    busy.open({}, start_round=0)
    for out, message in [
        (mine, f"{str(mine / 'config.json')!r} was not written by this run"),
        (tmp_path / "busy", f"run directory {str(tmp_path / 'busy')!r} is in use: another run holds its lock"),
    ]:
        code, stdout, stderr = run_cli([*argv, str(out)], capsys)
        assert code == 2 and stdout == "" and stderr.count("\n") == 1
        assert stderr.startswith(f"esper-train: error: {message}")
    busy.close()
    assert (mine / "config.json").read_text() == "{}\n"


def test_a_full_disk_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "run"
    argv = ["ppo", "--rounds", "1", "--envs", "2", *TINY, *TINY_POLICY, "--quiet", "--out", str(out)]
    code, _, stderr = run_cli(argv, capsys)
    assert code == 2
    assert stderr == f"esper-train: error: cannot write {str(out / 'config.json')!r}: No space left on device\n"
    assert sorted(p.name for p in out.iterdir()) == ["run.lock"]


@pytest.mark.filterwarnings("ignore:'esper.simic.cli' found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", ["esper.simic", "esper.simic.cli"])
def test_python_dash_m_runs_the_command(
    module: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m esper.simic.cli`` used to exit 0 without doing anything."""
    for argv, status in [(["policies"], 0), (["bogus"], 2)]:
        monkeypatch.setattr(sys, "argv", [module, *argv])
        with pytest.raises(SystemExit) as info:
            runpy.run_module(module, run_name="__main__")
        assert info.value.code == status
    captured = capsys.readouterr()
    assert "lstm" in captured.out and "invalid choice: 'bogus'" in captured.err


def test_help_lists_generated_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(["ppo", "--help"], capsys)
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
        "--governor-patience",
        "--reward-governor-penalty",
        "--objective-param-price",
        "--host-training-lr FLOAT, --host-lr FLOAT",
        "env.reward:",
    ):
        assert flag in stdout
    assert "Host epochs per episode" in stdout


@pytest.mark.slow
def test_python_dash_m_esper_simic_in_a_fresh_interpreter() -> None:
    command = [sys.executable, "-m", "esper.simic", "ppo", "--task", "nope"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("esper-train ppo: error: argument --task: invalid choice: 'nope'")
    assert result.stderr.count("\n") == 1


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


def test_every_rename_and_alias_names_a_real_option() -> None:
    """A misspelt path in RENAMES/ALIASES would silently drop the flag: every key must be a field path."""
    paths = {".".join(o.path) for o in cli.collect_options(cli.TrainConfig)}
    assert set(cli.RENAMES) | set(cli.ALIASES) <= paths
