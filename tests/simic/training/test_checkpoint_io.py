"""Checkpoint files: atomic writes, weights-only loads and one clear error per failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esper.simic.training.checkpoint import (
    FORMAT_VERSION,
    REQUIRED_KEYS,
    CheckpointError,
    check_compatible,
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
