"""``esper-train --preset``: every preset runs a tiny episode, the layering preset < file < flags,
resumes that keep their checkpoint's values, the ``presets`` listing and the one-line errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from cli_flags import run_cli

#: Sizes that shrink any preset's run to a second or so (a preset's own values sit under them).
TINY_RUN = ["--rounds", "1", "--num-envs", "1", "--episode-length", "2", "--quiet"]
TINY_POLICY = ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}', "--update-epochs", "1"]
#: Text settings small enough for a test (the preset's 512 windows of 32 tokens would take seconds).
TINY_TEXT = [
    *("--text-context-length", "8", "--text-train-windows", "16", "--text-val-windows", "8"),
    *("--text-corpus-bytes", "3000", "--batch-size", "8"),
]


def _fake_cifar(root: Path) -> Path:
    """CIFAR-10 python batches of 8 random images each (``data_batch_1..5``, ``test_batch``)."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 8))}
        with (root / name).open("wb") as f:
            pickle.dump(batch, f)
    return root


def _resolved(run: Path) -> dict[str, object]:
    config: dict[str, object] = json.loads((run / "config.json").read_text())
    return config


@pytest.mark.parametrize(
    ("preset", "extra", "task", "host"),
    [
        ("digits-varied", [], "digits-varied", "mlp"),
        ("benchmark", ["--num-minibatches", "1"], "digits-varied", "mlp"),
        ("digits-mlp", [], "digits", "mlp"),
        ("digits-cnn", [], "digits", "cnn"),
        ("cifar10-cnn", ["--batch-size", "8"], "cifar10", "cnn"),
        ("text-transformer", TINY_TEXT, "text", "transformer"),
    ],
)
def test_every_preset_runs_a_tiny_episode(
    preset: str, extra: list[str], task: str, host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if task == "cifar10":
        extra = [*extra, "--data-dir", str(_fake_cifar(tmp_path / "cifar"))]
    run = tmp_path / "run"
    code, _, stderr = run_cli(["ppo", "--preset", preset, *TINY_RUN, *TINY_POLICY, *extra, "--out", str(run)], capsys)
    assert code == 0, stderr
    config = _resolved(run)
    assert (config["env"]["task"], config["env"]["host"]) == (task, host)  # type: ignore[index]
    assert "preset" not in config  # the resolved values are recorded, not the name
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_preset_is_under_the_config_file_and_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """text-transformer sets host lr 0.1 and 512 windows; the file sets both, a flag sets the lr again."""
    config_file = tmp_path / "run.toml"
    config_file.write_text("[env.host_training]\nlr = 0.05\n[env.text]\ntrain_windows = 16\nval_windows = 8\n")
    run = tmp_path / "run"
    text = ["--text-context-length", "8", "--text-corpus-bytes", "3000", "--batch-size", "8"]
    argv = ["ppo", "--preset", "text-transformer", "--config", str(config_file), "--host-lr", "0.07", *text]
    code, _, stderr = run_cli([*argv, *TINY_RUN, *TINY_POLICY, "--out", str(run)], capsys)
    assert code == 0, stderr
    env = _resolved(run)["env"]
    assert (env["task"], env["host"]) == ("text", "transformer")  # type: ignore[index]  # the preset alone
    assert env["text"]["train_windows"] == 16  # type: ignore[index]  # the file over the preset
    assert env["host_training"]["lr"] == 0.07  # type: ignore[index]  # the flag over the file and the preset
    assert env["host_training"]["momentum"] == 0.9  # type: ignore[index]  # nobody's: the default


def test_resume_keeps_the_checkpoint_values_instead_of_applying_the_preset_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run overrode digits-cnn's host with a flag; applying the preset again would change
    the host, which resume refuses."""
    run = tmp_path / "run"
    argv = ["ppo", "--preset", "digits-cnn", "--resume", "auto", "--out", str(run)]
    code, _, stderr = run_cli([*argv, "--host", "mlp", *TINY_RUN, *TINY_POLICY], capsys)
    assert code == 0, stderr
    code, _, stderr = run_cli([*argv, "--rounds", "2", "--quiet"], capsys)
    assert code == 0, stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert _resolved(run)["env"]["host"] == "mlp"  # type: ignore[index]


def test_heuristic_takes_the_preset_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "heuristic.json"
    argv = ["heuristic", "--preset", "digits-cnn", "--episodes", "1", "--num-envs", "1", "--episode-length", "2"]
    code, stdout, stderr = run_cli([*argv, "--out", str(out)], capsys)
    assert code == 0, stderr
    assert stdout.startswith("policy")
    assert json.loads(out.read_text())["env"]["host"] == "cnn"


def test_presets_lists_every_preset_and_what_it_changes(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(["presets"], capsys)
    assert code == 0 and stderr == ""
    names = [line.split()[0] for line in stdout.splitlines() if not line.startswith(" ")]
    assert names == ["digits-varied", "benchmark", "digits-mlp", "digits-cnn", "cifar10-cnn", "text-transformer"]
    assert stdout.splitlines()[0].startswith("digits-varied (default)  the benchmark: bundled 8x8 digits")
    assert "    env.host_training.lr = 0.1\n    env.text.train_windows = 512\n" in stdout


@pytest.mark.parametrize("command", ["ppo", "study", "heuristic"])
def test_an_unknown_preset_is_one_line_naming_the_known_ones(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli([command, "--preset", "digits-rnn"], capsys)
    assert code == 2 and stdout == ""
    assert stderr == (
        "esper-train: error: unknown preset 'digits-rnn'; known presets: "
        "digits-varied, benchmark, digits-mlp, digits-cnn, cifar10-cnn, text-transformer\n"
    )
    assert list(tmp_path.iterdir()) == []  # no run directory was claimed


def test_the_cifar10_preset_without_its_data_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(["ppo", "--preset", "cifar10-cnn"], capsys)
    assert code == 2
    assert stderr == (
        "esper-train: error: task 'cifar10' needs data_dir (a directory with the CIFAR-10 python batches)\n"
    )
    code, _, stderr = run_cli(["ppo", "--preset", "cifar10-cnn", "--data-dir", "no-such-dir"], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "does not exist" in stderr
