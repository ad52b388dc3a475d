"""A character-level text corpus for language models, available offline.

The text is `data.path` (any UTF-8 file) or, by default, Debian's `fortunes` package: the
plain text files of /usr/share/games/fortunes (or `data.root`) concatenated in sorted name
order, leaving out the `.dat` index files and the `.u8` links (about 2.6 million
characters, 113 distinct). The vocabulary is the sorted set of the text's characters and a
character's id is its rank there.

Split, fixed and independent of the run seed: the first 90% of the characters are training
text and the last 10% validation text; no test split (0 rows). Each part is cut into
non-overlapping windows of T + 1 characters (T = `data.text_block`), and window i gives one
example: x = ids[s : s + T] and y = ids[s + 1 : s + T + 1] with s = i (T + 1), so no
character of one part ever appears in an example of the other. The probe set is a seeded
subset of the training windows, as for every dataset.

The Dataset's `source` names the file or folder with the corpus's sha256 and size, so the
run's meta.json identifies the exact text it was trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data.prepare import assemble_dataset
from sgdwalk.data.registry import register_dataset
from sgdwalk.data.types import Dataset, Split
from sgdwalk.errors import ConfigError, DataError

FORTUNES = Path("/usr/share/games/fortunes")  # where Debian's `fortunes` package puts them
TRAIN_FRACTION = 0.9  # the first 90% of the characters train, the rest validate
SKIPPED_SUFFIXES = (".dat", ".u8")  # strfile indexes, and links to the plain files


@dataclass(frozen=True)
class Corpus:
    """A text and where it came from.

    Attributes:
        text: the decoded characters.
        sha256: hex digest of the UTF-8 bytes the text was decoded from.
        n_bytes: number of those bytes.
        location: the file or folder read.
    """

    text: str
    sha256: str
    n_bytes: int
    location: str

    @property
    def source(self) -> str:
        """One line for the run's meta.json: location, checksum and size."""
        return (
            f"{self.location} (sha256 {self.sha256}, {self.n_bytes} bytes, "
            f"{len(self.text)} characters)"
        )


def fortune_files(folder: Path) -> list[Path]:
    """The plain text files of a fortunes folder, sorted by name (no .dat, no .u8)."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix not in SKIPPED_SUFFIXES
    )


def read_corpus(cfg: DataConfig) -> Corpus:
    """The text of `cfg.path`, or the fortunes in `cfg.root` (default FORTUNES).

    Raises:
        DataError: the file or folder is missing or unreadable, or the bytes are not UTF-8.
    """
    if cfg.path is not None:
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise DataError(f"data.path: expected a UTF-8 text file, got no file {path}")
        files, location = [path], path
    else:
        location = FORTUNES if cfg.root is None else Path(cfg.root).expanduser()
        files = fortune_files(location) if location.is_dir() else []
        if not files:
            raise DataError(
                f"text: expected Debian's fortunes in {location}, got no text files there "
                f"(apt-get install fortunes, or set data.path=FILE)"
            )
    try:
        raw = b"".join(p.read_bytes() for p in files)
    except OSError as exc:
        raise DataError(f"text {location}: expected readable files, got "
                        f"{exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1]
        raise DataError(f"text {location}: expected UTF-8 text, got byte {byte!r} at offset "
                        f"{exc.start} of the concatenated files") from None
    return Corpus(text, hashlib.sha256(raw).hexdigest(), len(raw), str(location))


def char_vocabulary(text: str) -> str:
    """The sorted set of the characters of `text`, as one string (id = position)."""
    return "".join(sorted(set(text)))


def encode(text: str, vocabulary: str) -> torch.Tensor:
    """int64 ids (len(text),): the position of each character in `vocabulary` (sorted).

    Raises:
        DataError: a character of `text` is not in `vocabulary`.
    """
    # code points through UTF-32 and a binary search: a Python loop over millions of
    # characters would take seconds
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.frombuffer(vocabulary.encode("utf-32-le"), dtype=np.uint32)
    ids = np.minimum(np.searchsorted(table, codes), max(len(table) - 1, 0))
    if len(codes) and (len(table) == 0 or not np.array_equal(table[ids], codes)):
        raise DataError("encode: expected characters of the vocabulary, got others")
    return torch.from_numpy(ids.astype(np.int64))


def decode(ids: torch.Tensor, vocabulary: str) -> str:
    """The characters of 1-D int64 `ids`: the inverse of `encode`."""
    return "".join(vocabulary[i] for i in ids.tolist())


def windows(ids: torch.Tensor, block: int) -> Split:
    """Non-overlapping windows of `block` + 1 ids as (x, y) = (ids[s:s+T], ids[s+1:s+T+1]).

    Window i starts at s = i (T + 1); a trailing remainder shorter than T + 1 is dropped.
    Returns a Split with x and y of shape (len(ids) // (T + 1), T).
    """
    n = ids.shape[0] // (block + 1)
    rows = ids[: n * (block + 1)].reshape(n, block + 1)
    return Split(rows[:, :-1].clone(), rows[:, 1:].clone())


@register_dataset("text")
def load_text(cfg: DataConfig) -> Dataset:
    """The character corpus of the module docstring, in windows of `data.text_block`."""
    if cfg.val_size is not None:
        raise ConfigError(
            f"data.val_size: expected none for text (the last 10% of the characters "
            f"validate), got {cfg.val_size}"
        )
    corpus = read_corpus(cfg)
    vocabulary = char_vocabulary(corpus.text)
    ids = encode(corpus.text, vocabulary)
    cut = int(TRAIN_FRACTION * ids.shape[0])
    train, val = windows(ids[:cut], cfg.text_block), windows(ids[cut:], cfg.text_block)
    if not len(train) or not len(val):
        raise DataError(
            f"text {corpus.location}: expected at least one window of {cfg.text_block + 1} "
            f"characters in both the first 90% and the last 10%, got {ids.shape[0]} characters"
        )
    empty = Split(train.x[:0], train.y[:0])
    return assemble_dataset(cfg, train, val, empty, num_classes=len(vocabulary),
                            augment=None, source=corpus.source)
