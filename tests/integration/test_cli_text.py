"""``esper-train`` on the text task with the transformer host: a tiny run, its evaluation, and the one-line errors."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from cli_flags import run_cli

from esper.simic.env.grammar import generate_corpus

#: A transformer run small enough for a test: 8-token windows, 32 training windows an epoch, 3-epoch episodes.
TINY_TEXT = [
    "--task",
    "text",
    "--host",
    "transformer",
    "--episode-length",
    "3",
    "--text-context-length",
    "8",
    "--text-train-windows",
    "32",
    "--text-val-windows",
    "8",
    "--text-corpus-bytes",
    "3000",
    "--batch-size",
    "16",
]
TINY_POLICY = ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}']


def test_ppo_and_eval_on_the_generated_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = ["ppo", "--rounds", "1", "--num-envs", "2", *TINY_TEXT, *TINY_POLICY, "--out", str(run), "--quiet"]
    code, _, stderr = run_cli(argv, capsys)
    assert code == 0, stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["episodes"] == 2
    assert all(0.0 <= acc <= 100.0 for acc in rows[0]["final_accuracies"])
    code, stdout, stderr = run_cli(
        ["eval", str(run / "checkpoint_last.pt"), "--episodes", "2", "--num-envs", "2", "--no-costly-baselines"], capsys
    )
    assert code == 0, stderr
    assert stdout.splitlines()[1].startswith("checkpoint (lstm)")
    assert len(json.loads((run / "eval.json").read_text())["rows"]) == 5


@pytest.mark.slow
def test_eval_with_every_baseline_on_a_corpus_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(generate_corpus(3000, seed=7))
    run = tmp_path / "run"
    argv = ["ppo", "--rounds", "1", "--num-envs", "2", *TINY_TEXT, "--data-dir", str(corpus), *TINY_POLICY]
    assert run_cli([*argv, "--out", str(run), "--quiet"], capsys)[0] == 0
    evaluation = ["eval", str(run / "checkpoint_last.pt"), "--episodes", "2", "--num-envs", "2"]
    code, _, stderr = run_cli([*evaluation, "--data-dir", str(corpus)], capsys)
    assert code == 0, stderr
    data = json.loads((run / "eval.json").read_text())
    assert len(data["rows"]) == 9 and len(data["fixed_schedules"]) == 7  # one per transformer blueprint


def test_eval_and_resume_read_a_corpus_the_checkpoint_names_only_when_the_user_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint loads safely, but its config is the file's word: the path it names is read only
    once the user confirms it with --data-dir."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(generate_corpus(3000, seed=7))
    run = tmp_path / "run"
    argv = ["ppo", "--rounds", "1", "--num-envs", "2", *TINY_TEXT, "--data-dir", str(corpus), *TINY_POLICY]
    assert run_cli([*argv, "--out", str(run), "--quiet"], capsys)[0] == 0
    checkpoint = str(run / "checkpoint_last.pt")
    evaluation = ["eval", checkpoint, "--episodes", "2", "--num-envs", "2", "--no-costly-baselines"]
    resume = ["ppo", "--resume", checkpoint, "--rounds", "2", "--quiet"]
    for command in (evaluation, resume):
        code, stdout, stderr = run_cli(command, capsys)
        assert code == 2 and stdout == ""
        assert stderr.startswith("esper-train: error:") and stderr.count("\n") == 1
        assert f"pass --data-dir {shlex.quote(str(corpus))} to confirm it" in stderr
    assert not (run / "eval.json").exists() and len((run / "metrics.jsonl").read_text().splitlines()) == 1
    for command in (evaluation, resume):
        code, _, stderr = run_cli([*command, "--data-dir", str(corpus)], capsys)
        assert code == 0, stderr
    assert (run / "eval.json").exists() and len((run / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--host", "mlp"], "task 'text' cannot run on host 'mlp'"),
        (["--data-dir", "missing.txt"], "does not exist"),
        (["--data-dir", "empty.txt"], "is empty"),
    ],
)
def test_bad_text_runs_are_one_line(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    code, stdout, stderr = run_cli(["ppo", "--rounds", "1", *TINY_TEXT, *extra, "--out", "run"], capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("esper-train: error:") and message in stderr
    assert stdout == ""
