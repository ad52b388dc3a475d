"""CIFAR-10 from the official *binary* archive (never the pickled Python version).

The archive cifar-10-binary.tar.gz holds cifar-10-batches-bin/ with data_batch_1..5.bin
(10,000 records each) and test_batch.bin; a record is 1 label byte then 3,072 pixel bytes
(1,024 red, 1,024 green, 1,024 blue, each row-major 32x32).

Study split: validation is the last `data.val_size` records of the five training files in
order (default 5,000, or a tenth of them when that is smaller, so tiny fixture files split
too), train the rest (45,000), test the 10,000 of test_batch.bin. Pixels are scaled to
[0, 1] and normalised per channel with the study's mean and std. `data.augment` attaches
`augment_cifar` (random crop 32 with padding 4, horizontal flip). The padding is black,
as torchvision pads before normalising: fill = -mean/std per channel.

An archive, downloaded or found on disk, is trusted only when it is the official one: its
members are read first (hostile members, more than 16 members or more bytes than the six
official batch files hold are refused), every batch file must be there with the official
size (10,000 records), and the archive must match the published MD5; only then is it
extracted, into a staging folder that is renamed into place.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data.augment import augment_cifar
from sgdwalk.data.checksums import verify_file
from sgdwalk.data.download import fetch
from sgdwalk.data.extract import safe_extract
from sgdwalk.data.prepare import assemble_dataset, hold_out_tail, val_size
from sgdwalk.data.registry import register_dataset
from sgdwalk.data.roots import dataset_root
from sgdwalk.data.types import Dataset, Split
from sgdwalk.errors import DataError

RECORD_BYTES = 1 + 3 * 32 * 32
BATCH_FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # of ARCHIVE, published with it
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
RECORDS_PER_FILE = 10_000  # records in each batch file of the official archive
ARCHIVE_MEMBERS = 16  # the official archive has 9: the folder, 6 batches, 2 small text files
ARCHIVE_EXTRA_BYTES = 1 << 20  # room for its text files (batches.meta.txt, readme.html)
MEAN = (0.4914, 0.4822, 0.4465)  # per channel, of pixels in [0, 1] (the study's values)
STD = (0.2023, 0.1994, 0.2010)
BLACK = tuple(-m / s for m, s in zip(MEAN, STD))  # pixel value 0 after normalisation


def read_cifar_binary(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one CIFAR-10 binary batch file with any number of records.

    Returns:
        x: uint8 pixels, shape (N, 3, 32, 32) (channels first, as stored).
        y: int64 labels in [0, 10), shape (N,).

    Raises:
        DataError: unreadable file, a size that is not a positive multiple of 3,073 bytes
        (truncated or another format), or a label byte above 9.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: expected a readable file, got {exc.strerror or exc}") from None
    if not raw or len(raw) % RECORD_BYTES:
        raise DataError(
            f"{path}: expected a CIFAR-10 binary file of whole {RECORD_BYTES}-byte records, "
            f"got {len(raw)} bytes"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: expected label bytes 0..9, got {int(labels.max())}")
    pixels = np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32)
    return torch.from_numpy(pixels), torch.from_numpy(labels)


def has_batches(folder: Path) -> bool:
    """Whether `folder` holds all six batch files."""
    return all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE))


def locate(cfg: DataConfig) -> Path:
    """The cifar-10-batches-bin folder, extracting (and with `cfg.download`, fetching) the
    archive when needed. `data.root` may be that folder, the folder containing it, or the
    .tar.gz itself; by default default_data_root()/"cifar10"."""
    root = dataset_root(cfg.root, "cifar10")
    if root.is_file():  # the archive itself: extract next to it
        archive, home = root, root.parent
    else:
        if has_batches(root):
            return root
        archive, home = root / ARCHIVE, root
    folder = home / BATCH_FOLDER
    if has_batches(folder):
        return folder
    if not archive.is_file() and cfg.download:
        url = (cfg.url or CIFAR10_URL).rstrip("/") + "/" + ARCHIVE
        fetch(url, archive, md5=CIFAR10_MD5, progress=sys.stderr.isatty())
    if archive.is_file():
        max_bytes = 6 * RECORDS_PER_FILE * RECORD_BYTES + ARCHIVE_EXTRA_BYTES
        safe_extract(archive, home, max_bytes, ARCHIVE_MEMBERS, check=official(archive))
        return folder
    raise DataError(
        f"cifar10: expected {BATCH_FOLDER}/ (or {ARCHIVE}) in {root}, got "
        f"{'no such folder' if not root.exists() else 'neither'} (to get it: set "
        f"data.root=FOLDER or data.download=true; only the binary version is read)"
    )


def official(archive: Path):
    """The check `safe_extract` runs on the archive's members before writing anything:
    every batch file present, made of whole records, with the official record count; then
    the archive's MD5. Members are checked first so a broken archive is named precisely."""

    def check(sizes: dict[str, int]) -> None:
        sizes = {str(PurePosixPath(name)): size for name, size in sizes.items()}  # "./a" = "a"
        names = (*TRAIN_FILES, TEST_FILE)
        missing = [n for n in names if f"{BATCH_FOLDER}/{n}" not in sizes]
        if missing:
            raise DataError(f"{archive}: expected {BATCH_FOLDER}/ with {', '.join(names)}, got "
                            f"an archive without them ({', '.join(missing)} missing; nothing "
                            f"was extracted)")
        for name in names:  # the format first, for every file, then the size
            size = sizes[f"{BATCH_FOLDER}/{name}"]
            if not size or size % RECORD_BYTES:
                raise DataError(f"{archive}: {BATCH_FOLDER}/{name}: expected a CIFAR-10 binary "
                                f"file of whole {RECORD_BYTES}-byte records, got {size} bytes "
                                f"(nothing was extracted)")
        for name in names:
            size = sizes[f"{BATCH_FOLDER}/{name}"]
            if size != RECORDS_PER_FILE * RECORD_BYTES:
                raise DataError(f"{archive}: {BATCH_FOLDER}/{name}: expected the official "
                                f"{RECORDS_PER_FILE} records, got {size // RECORD_BYTES} "
                                f"(nothing was extracted)")
        verify_file(archive, md5=CIFAR10_MD5)

    return check


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 ((x / 255) - mean_c) / std_c with the study's MEAN, STD."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return pixels.to(torch.float32).div_(255.0).sub_(mean).div_(std)


@register_dataset("cifar10")
def load_cifar10(cfg: DataConfig) -> Dataset:
    """CIFAR-10 with the study split and normalisation (see the module docstring)."""
    folder = locate(cfg)
    parts = [read_cifar_binary(folder / name) for name in TRAIN_FILES]
    x = normalise(torch.cat([p[0] for p in parts]))
    y = torch.cat([p[1] for p in parts])
    del parts
    train, val = hold_out_tail(x, y, val_size(cfg, y.shape[0]))
    test_x, test_y = read_cifar_binary(folder / TEST_FILE)
    test = Split(normalise(test_x), test_y)
    augment = functools.partial(augment_cifar, fill=BLACK) if cfg.augment else None
    return assemble_dataset(cfg, train, val, test, num_classes=10, augment=augment,
                            source=str(folder))
