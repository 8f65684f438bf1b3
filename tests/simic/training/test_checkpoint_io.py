"""Checkpoint files: atomic writes, weights-only loads and one clear error per failure."""

from __future__ import annotations

import errno
import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from esper.simic.training.checkpoint import (
    FORMAT_VERSION,
    REQUIRED_KEYS,
    CheckpointError,
    check_compatible,
    confirm_data_dir,
    read_checkpoint,
    write_checkpoint,
)
from esper.tamiyo.contract import SlotConfig, feature_size, morphogenetic_action_space


def _minimal(**overrides: object) -> dict[str, object]:
    slots = SlotConfig()
    space = morphogenetic_action_space(slots)
    data: dict[str, object] = {key: {} for key in REQUIRED_KEYS}
    data["format_version"] = FORMAT_VERSION
    data["policy"] = {
        "type": "lstm",
        "config": {},
        "slot_ids": list(slots.slot_ids),
        "head_names": list(space.head_names),
        "head_sizes": list(space.head_sizes),
        "feature_dim": feature_size(3),
    }
    data["policy_state"] = {"w": torch.arange(3.0)}
    data.update(overrides)
    return data


def test_round_trip_and_no_temporary_files_left(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ckpt.pt"
    write_checkpoint(path, _minimal())
    write_checkpoint(path, _minimal())
    loaded = read_checkpoint(path)
    assert torch.equal(loaded["policy_state"]["w"], torch.arange(3.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a zip", None])
def test_corrupt_files_give_one_clear_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.pt"
    if content is None:  # a real checkpoint cut in half
        write_checkpoint(path, _minimal())
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint") as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)
    assert "weights_only" not in str(info.value)  # torch's advice to load unsafely is not passed on


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "code.pt"
    torch.save({"format_version": FORMAT_VERSION, "x": Path("/")}, path)
    # Only the unpickler's finding is kept, not torch's paragraphs around it.
    only_the_finding = r"not a checkpoint \(Unsupported global: GLOBAL pathlib\.\w+\b[^.()]*\)$"
    with pytest.raises(CheckpointError, match=only_the_finding):
        read_checkpoint(path)


class _RunsCode:
    """Unpickling it would run ``os.system`` (touching a marker file), the classic malicious pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


class _OpensAFile:
    """Unpickling it would call ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.marker), "w")


def _torch_file(payload: object, **options: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, "x": payload}, buffer, **options)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda m: _torch_file(_RunsCode(m), pickle_protocol=2), id="os.system, blocked module"),
        pytest.param(lambda m: _torch_file(_OpensAFile(m)), id="open, not an allowed global"),
        pytest.param(lambda m: _torch_file(_RunsCode(m), _use_new_zipfile_serialization=False), id="legacy format"),
        pytest.param(lambda m: pickle.dumps({"x": _RunsCode(m)}, protocol=2), id="bare pickle"),
        pytest.param(lambda m: pickle.dumps({"x": _RunsCode(m)}, protocol=5), id="bare pickle 5"),
    ],
)
def test_a_malicious_checkpoint_runs_nothing_and_never_invites_unsafe_loading(tmp_path: Path, make: Any) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(make(marker))
    with pytest.raises(CheckpointError, match="is corrupt or not a checkpoint") as info:
        read_checkpoint(path)
    message = str(info.value)
    assert not marker.exists()
    assert "\n" not in message
    for unsafe in ("weights_only", "weights only", "unsafe", "trust"):
        assert unsafe not in message.lower()


def test_the_unpickler_finding_is_kept_when_torch_words_it_without_the_marker(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(_torch_file(_RunsCode(tmp_path / "ran"), pickle_protocol=2))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(info.value).endswith("(Trying to load unsupported GLOBAL posix.system whose module posix is blocked)")


@pytest.fixture
def umask() -> Iterator[Any]:
    """``umask(mask)`` sets the process umask for this test; the original is restored afterwards."""
    original = os.umask(0o022)
    os.umask(original)
    yield os.umask
    os.umask(original)


@pytest.mark.parametrize(
    ("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["umask 022", "umask 077", "umask 002"]
)
def test_checkpoints_get_the_same_mode_as_other_files(tmp_path: Path, umask: Any, mask: int, mode: int) -> None:
    umask(mask)
    path = tmp_path / "ckpt.pt"
    write_checkpoint(path, _minimal())
    (tmp_path / "config.json").write_text("{}")
    assert path.stat().st_mode & 0o777 == mode == (tmp_path / "config.json").stat().st_mode & 0o777


def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.pt"
    write_checkpoint(path, _minimal())
    previous = path.read_bytes()
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(CheckpointError) as info:
        write_checkpoint(path, _minimal(policy_state={"w": torch.zeros(1000)}))
    monkeypatch.undo()
    assert str(info.value) == f"cannot write checkpoint {str(path)!r}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # the temporary is gone
    assert path.read_bytes() == previous


def test_other_version_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    write_checkpoint(path, _minimal(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        read_checkpoint(path)
    data = _minimal()
    del data["rng"]
    write_checkpoint(path, data)
    with pytest.raises(CheckpointError, match=r"incomplete: missing \['rng'\]"):
        read_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not an Esper training checkpoint"):
        read_checkpoint(path)


def test_a_directory_or_a_malformed_section_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"is a directory; pass a checkpoint file such as '.*checkpoint_last"):
        read_checkpoint(tmp_path)
    path = tmp_path / "c.pt"
    write_checkpoint(path, _minimal(config=["not", "a", "table"], rng=3))
    with pytest.raises(CheckpointError, match=r"is malformed: \['rng', 'config'\] must be tables"):
        read_checkpoint(path)


def test_compatibility_checks_name_the_mismatch() -> None:
    header = _minimal()["policy"]
    slots = SlotConfig()
    space = morphogenetic_action_space(slots)
    check_compatible(header, slot_config=slots, action_space=space, feature_dim=feature_size(3))  # type: ignore[arg-type]
    two = SlotConfig.for_count(2)
    with pytest.raises(CheckpointError, match="slot ids"):
        check_compatible(
            header, slot_config=two, action_space=morphogenetic_action_space(two), feature_dim=feature_size(2)
        )  # type: ignore[arg-type]
    reordered = SlotConfig(("r0c1", "r0c0", "r0c2"))
    with pytest.raises(CheckpointError, match="slot ids"):
        check_compatible(header, slot_config=reordered, action_space=space, feature_dim=feature_size(3))  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="feature size 116 does not match the environment's 120"):
        check_compatible(header, slot_config=slots, action_space=space, feature_dim=120)  # type: ignore[arg-type]
    bad_space = dict(header, head_sizes=[3, 13, 4, 3, 3, 4, 5, 7])  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="action space"):
        check_compatible(bad_space, slot_config=slots, action_space=space, feature_dim=feature_size(3))


@pytest.mark.parametrize(
    "env",
    [{"task": "cifar10", "data_dir": "/their files/cifar"}, {"task": "text", "data_dir": "/their files/corpus.txt"}],
)
def test_a_data_path_only_the_checkpoint_names_is_never_read_unconfirmed(env: dict[str, str]) -> None:
    with pytest.raises(CheckpointError) as info:
        confirm_data_dir({"env": env}, None, checkpoint="ck.pt")
    message = str(info.value)
    assert "\n" not in message and "'ck.pt'" in message
    assert f"pass --data-dir '{env['data_dir']}' to confirm it" in message  # shell-quoted: ready to paste
    assert confirm_data_dir({"env": env}, "/mine", checkpoint="ck.pt") == "/mine"  # the user's path wins
    assert confirm_data_dir({"env": env}, env["data_dir"], checkpoint="ck.pt") == env["data_dir"]


@pytest.mark.parametrize(
    "env",
    [
        {"task": "digits-varied", "data_dir": None},
        {"task": "digits", "data_dir": "/never/read"},  # digits reads the bundled file, whatever the path
        {"task": "synthetic", "data_dir": "/never/read"},
        {"task": "text", "data_dir": None},  # the generated corpus
        {},
    ],
)
def test_checkpoints_of_tasks_that_read_no_files_need_no_data_dir(env: dict[str, str | None]) -> None:
    assert confirm_data_dir({"env": env}, None, checkpoint="ck.pt") is None
    assert confirm_data_dir({"env": env}, "/mine", checkpoint="ck.pt") == "/mine"
