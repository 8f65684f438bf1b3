"""``esper-train`` on CIFAR-10 with the cnn host, on small batches in the CIFAR-10 format that the test writes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from esper.simic import cli
from esper.simic.env.datasets import write_cifar10_batches


@pytest.mark.slow
def test_ppo_on_generated_cifar10_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = write_cifar10_batches(tmp_path / "cifar-10-batches-py", per_batch=8, num_val=10, seed=0)
    run = tmp_path / "run"
    argv = ["ppo", "--task", "cifar10", "--host", "cnn", "--no-impaired", "--data-dir", str(data_dir)]
    argv += ["--episode-length", "2", "--batch-size", "20", "--rounds", "1", "--num-envs", "2"]
    argv += ["--policy-kwargs", '{"hidden_size": 16, "lstm_hidden": 16}', "--out", str(run), "--quiet"]
    code = cli.main(argv)
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["episodes"] == 2
    assert all(0.0 <= acc <= 100.0 for acc in rows[0]["final_accuracies"])
    config = json.loads((run / "config.json").read_text())
    assert config["env"]["cifar10"] == {"augment": True, "crop_padding": 4}


def test_a_bad_augmentation_setting_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ppo", "--task", "cifar10", "--host", "cnn", "--data-dir", str(tmp_path), "--cifar10-crop-padding", "-1"]
    assert cli.main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("esper-train: error:") and "cifar10.crop_padding" in err and "\n" not in err


class _WritesAMarker:
    """Unpickling calls ``open(path, "w")``: stands in for an ``os.system`` payload, harmlessly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


def test_a_batch_that_would_run_code_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = write_cifar10_batches(tmp_path / "cifar", per_batch=2, num_val=2, seed=0)
    marker = tmp_path / "MARKER"
    (data_dir / "test_batch").write_bytes(pickle.dumps({b"data": _WritesAMarker(marker), b"labels": [0]}))
    argv = ["ppo", "--task", "cifar10", "--host", "cnn", "--data-dir", str(data_dir), "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("esper-train: error:") and err.count("\n") == 1
    assert "test_batch" in err and f"refused global {open.__module__}.open" in err
    assert not marker.exists()
