"""The text task: corpus reading (files the tests write), byte tokens, windows, split, the generated corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esper.simic.env import DataError, EnvConfig, TextTask, load_task, load_text, read_corpus
from esper.simic.env.grammar import generate_corpus
from esper.simic.env.host_epoch import HostRun, train_epoch
from esper.simic.env.hosts import HostPreset, build_host
from esper.simic.env.model import MorphogeneticModel
from esper.simic.env.sgd import ModuleSGD, SGDSettings
from esper.simic.env.slot import SlotSettings


def test_one_file_is_read_as_bytes(tmp_path: Path) -> None:
    corpus = tmp_path / "story.txt"
    corpus.write_bytes(b"Once upon a time.\n")
    assert read_corpus(corpus) == b"Once upon a time.\n"
    assert read_corpus(corpus, max_bytes=4) == b"Once"


def test_a_folder_is_read_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_bytes(b"second")
    (tmp_path / "a.txt").write_bytes(b"first")
    (tmp_path / "notes.md").write_bytes(b"not a .txt file")
    assert read_corpus(tmp_path) == b"first\nsecond"
    assert read_corpus(tmp_path, max_bytes=8) == b"first\nse"
    assert read_corpus(tmp_path, max_bytes=5) == b"first"


def test_non_utf8_bytes_are_tokens(tmp_path: Path) -> None:
    raw = bytes([0x68, 0x69, 0xFF, 0xC3, 0x28, 0x00, 0x80]) * 20  # invalid UTF-8 sequences, a NUL
    corpus = tmp_path / "binary.txt"
    corpus.write_bytes(raw)
    data = load_text(TextTask(context_length=4, val_fraction=0.25, val_windows=0), str(corpus))
    stream = torch.cat([data.train_x.flatten(), data.val_x.flatten()])
    assert set(stream.tolist()) == set(raw)
    assert bytes(data.train_x[0].tolist()) == raw[:4] and bytes(data.train_y[0].tolist()) == raw[1:5]


@pytest.mark.parametrize(
    "content,message",
    [(None, "does not exist"), (b"", "is empty"), (b" \n\t\n", "is empty"), (b"abc", "too short")],
)
def test_bad_corpora_are_one_clear_error(tmp_path: Path, content: bytes | None, message: str) -> None:
    corpus = tmp_path / "corpus.txt"
    if content is not None:
        corpus.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_text(TextTask(), str(corpus))
    assert "\n" not in str(info.value)


def test_a_folder_without_text_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"xyz")
    with pytest.raises(DataError, match=r"holds no \.txt files"):
        read_corpus(tmp_path)


def test_windows_split_and_validation_subset(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(bytes(range(200)))  # token i is i: windows are easy to read
    settings = TextTask(context_length=8, val_fraction=0.2, val_windows=2, train_windows=5)
    data = load_text(settings, str(corpus))
    # 160 training tokens → (160 − 1) // 8 = 19 windows; 40 validation tokens → 4 windows, 2 kept (first, last).
    assert data.train_x.shape == (19, 8) and data.train_x.dtype == torch.int64
    assert data.train_x[0].tolist() == list(range(8)) and data.train_y[0].tolist() == list(range(1, 9))
    assert data.val_x.tolist() == [list(range(160, 168)), list(range(184, 192))]
    assert data.val_y[1].tolist() == list(range(185, 193))
    assert (data.num_classes, data.epoch_samples, data.input_shape) == (256, 5, (8,))


def test_an_epoch_trains_on_epoch_samples_windows(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(generate_corpus(4000, 1))
    data = load_text(TextTask(context_length=8, train_windows=40), str(corpus))
    host = build_host(
        "transformer",
        impaired=False,
        input_shape=(8,),
        num_classes=256,
        generator=torch.Generator().manual_seed(0),
        preset=HostPreset((8, 8, 8), embed_dim=8),
    )
    model = MorphogeneticModel(host, ("r0c0",), SlotSettings())
    host_sgd = ModuleSGD(list(model.host.parameters()), SGDSettings(lr=0.1, momentum=0.0, max_grad_norm=1.0))
    stats = train_epoch(HostRun(model, host_sgd, torch.Generator()), data, batch_size=16)
    assert stats.num_batches == 2  # 40 windows of the 449, in minibatches of 16 (the partial one dropped)
    assert 0.0 <= stats.train_accuracy <= 100.0 and stats.train_loss > 0.0


def test_generated_corpus_is_deterministic_ascii_grammar() -> None:
    text = generate_corpus(5000, seed=3)
    assert text == generate_corpus(5000, seed=3) and text != generate_corpus(5000, seed=4)
    assert len(text) >= 5000 and text.endswith(b".\n")
    words = set(text.decode("ascii").replace(".", " ").split())
    assert {"the", "that", "foxes", "mice", "is", "are"} <= words


def test_the_default_text_task_needs_no_download() -> None:
    data = load_task(EnvConfig(task="text", host="transformer", text=TextTask(corpus_bytes=20_000)))
    size = len(generate_corpus(20_000, seed=0))
    val_tokens = round(0.1 * size)
    assert data.name == "text" and data.input_shape == (32,)
    assert data.train_x.shape[0] == (size - val_tokens - 1) // 32 and data.val_x.shape[0] == (val_tokens - 1) // 32
    assert data.epoch_samples == 200  # an epoch trains on 200 of the ~560 training windows


def test_text_settings_are_validated() -> None:
    with pytest.raises(ValueError, match=r"text\.context_length"):
        TextTask(context_length=0)
    with pytest.raises(ValueError, match=r"text\.val_fraction"):
        TextTask(val_fraction=1.0)
