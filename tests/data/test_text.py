"""The character corpus: vocabulary and encoding, the fixed 90/10 split in non-overlapping
windows, the probe set, the recorded checksum, the fortunes folder rule and its errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data import Split, load_dataset
from sgdwalk.data.text import FORTUNES, char_vocabulary, decode, encode, fortune_files, windows
from sgdwalk.errors import ConfigError, DataError

# 1,000 characters with multi-byte ones, so characters and bytes differ in count
TEXT = ("Le cœur a ses raisons que la raison ne connaît point. ✓\n" * 18)[:1000]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_vocabulary_is_the_sorted_set_and_encode_inverts_decode():
    vocabulary = char_vocabulary(TEXT)
    assert vocabulary == "".join(sorted(set(TEXT))) and len(set(vocabulary)) == len(vocabulary)
    ids = encode(TEXT, vocabulary)
    assert ids.dtype == torch.int64 and ids.shape == (1000,)
    assert ids.tolist() == [vocabulary.index(c) for c in TEXT]
    assert decode(ids, vocabulary) == TEXT
    with pytest.raises(DataError, match="expected characters of the vocabulary"):
        encode("abz", "ab")


def test_windows_do_not_overlap_and_y_is_x_shifted_by_one():
    ids = torch.arange(23)
    split = windows(ids, 4)  # 23 // 5 = 4 windows of 5, the last 3 ids dropped
    assert split.x.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8], [10, 11, 12, 13], [15, 16, 17, 18]]
    assert torch.equal(split.y, split.x + 1)


def test_split_sizes_shift_and_no_text_shared_between_train_and_validation(corpus):
    block = 10
    data = load_dataset(DataConfig(name="text", path=str(corpus), text_block=block))
    vocabulary = char_vocabulary(TEXT)
    cut = 900  # the first 90% of 1,000 characters
    assert (len(data.train), len(data.val), len(data.test)) == (900 // 11, 100 // 11, 0)
    assert data.input_shape == (block,) and data.num_classes == len(vocabulary)
    assert data.train.x.dtype == data.train.y.dtype == torch.int64
    for split, start in ((data.train, 0), (data.val, cut)):
        for i in range(len(split)):
            s = start + i * (block + 1)  # window i covers characters s .. s + block
            assert decode(split.x[i], vocabulary) == TEXT[s : s + block]
            assert decode(split.y[i], vocabulary) == TEXT[s + 1 : s + block + 1]
    last_train_char = (len(data.train) - 1) * (block + 1) + block  # the last y character
    assert last_train_char < cut  # training text ends before the validation text starts


def test_probe_set_is_a_seeded_subset_of_train(corpus):
    cfg = DataConfig(name="text", path=str(corpus), text_block=10, probe_size=20)
    a, b = load_dataset(cfg), load_dataset(cfg)
    other = load_dataset(DataConfig(name="text", path=str(corpus), text_block=10, probe_size=20,
                                    probe_seed=1))
    assert a.probe.x.shape == (20, 10) and torch.equal(a.probe.x, b.probe.x)
    assert not torch.equal(a.probe.x, other.probe.x)
    rows = {tuple(r) for r in a.train.x.tolist()}
    assert all(tuple(r) in rows for r in a.probe.x.tolist())
    assert torch.equal(a.probe.y[:, :-1], a.probe.x[:, 1:])


def test_source_records_the_file_its_sha256_and_size(corpus):
    data = load_dataset(DataConfig(name="text", path=str(corpus), text_block=10))
    raw = TEXT.encode("utf-8")
    assert len(raw) > len(TEXT)  # the multi-byte characters are there
    assert data.source == (
        f"{corpus} (sha256 {hashlib.sha256(raw).hexdigest()}, {len(raw)} bytes, "
        f"{len(TEXT)} characters)"
    )


def test_train_size_keeps_the_first_windows(corpus):
    full = load_dataset(DataConfig(name="text", path=str(corpus), text_block=10))
    small = load_dataset(DataConfig(name="text", path=str(corpus), text_block=10, train_size=5))
    assert torch.equal(small.train.x, full.train.x[:5]) and torch.equal(small.val.x, full.val.x)


def test_fortunes_folder_skips_dat_indexes_and_u8_links(tmp_path):
    (tmp_path / "b").write_text("second file\n", encoding="utf-8")
    (tmp_path / "a").write_text("first file\n" * 20, encoding="utf-8")
    (tmp_path / "a.dat").write_bytes(b"\x00\x00\x00\x02\xff")  # not text: must be skipped
    os.symlink("a", tmp_path / "a.u8")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in fortune_files(tmp_path)] == ["a", "b"]
    data = load_dataset(DataConfig(name="text", root=str(tmp_path), text_block=4))
    raw = ("first file\n" * 20 + "second file\n").encode()
    assert f"sha256 {hashlib.sha256(raw).hexdigest()}, {len(raw)} bytes" in data.source
    assert len(data.train) + len(data.val) == int(0.9 * len(raw)) // 5 + (
        len(raw) - int(0.9 * len(raw))) // 5


@pytest.mark.parametrize("setup, fragment", [
    (lambda d: {"path": str(d / "missing.txt")}, "data.path: expected a UTF-8 text file, got no "
                                                 "file"),
    (lambda d: {"root": str(d / "nowhere")}, "(apt-get install fortunes, or set data.path=FILE)"),
    (lambda d: {"path": str(_write(d / "latin1.txt", "caf\xe9".encode("latin-1") * 300))},
     "expected UTF-8 text, got byte b'\\xe9' at offset 3"),
    (lambda d: {"path": str(_write(d / "short.txt", b"x" * 100))},
     "expected at least one window of 65 characters in both the first 90% and the last 10%, "
     "got 100 characters"),
])
def test_missing_or_unusable_text_is_a_one_line_data_error(tmp_path, setup, fragment):
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="text", **setup(tmp_path)))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def _write(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


def test_config_checks(corpus):
    with pytest.raises(ConfigError, match=r"data.val_size: expected none for text"):
        load_dataset(DataConfig(name="text", path=str(corpus), val_size=10))
    with pytest.raises(ConfigError, match=r"data.text_block: expected an integer in \[1, "):
        DataConfig(text_block=0)
    with pytest.raises(ConfigError, match="data.path: expected a file path, got ''"):
        DataConfig(path="")


def test_token_splits_are_checked():
    ids = torch.zeros(3, 4, dtype=torch.int64)
    assert len(Split(ids, ids)) == 3
    with pytest.raises(DataError, match=r"expected int64 token ids x and targets y of one "
                                        r"shape \(N, T\), got \(3, 4\) torch.int64 and \(3,\)"):
        Split(ids, ids[:, 0])


@pytest.mark.skipif(not FORTUNES.is_dir(), reason="Debian's fortunes package not installed")
def test_the_default_corpus_is_debians_fortunes():
    data = load_dataset(DataConfig(name="text"))
    raw = b"".join(p.read_bytes() for p in fortune_files(FORTUNES))
    n = len(raw.decode("utf-8"))
    assert len(fortune_files(FORTUNES)) > 10
    assert data.source.startswith(f"{FORTUNES} (sha256 {hashlib.sha256(raw).hexdigest()}, ")
    assert (len(data.train), len(data.val)) == (int(0.9 * n) // 65, (n - int(0.9 * n)) // 65)
    assert data.num_classes == len(set(raw.decode("utf-8")))
    assert len(data.probe) == 512 and torch.equal(data.train.y[:, :-1], data.train.x[:, 1:])
