"""MNIST and Fashion-MNIST from their four IDX files (raw or .gz).

Both: images (1, 28, 28), 10 classes, 60,000 training and 10,000 test images. Validation is
`data.val_size` images of the training file (default 5,000, or a tenth of the file when
that is smaller) taken by `stratified_split` with the fixed SPLIT_SEED, train the rest in
the same stratified order; so a file sorted by class still gives every split every class
(the file's tail, used before, gave a validation split of only the last class). Pixels
are scaled to [0, 1] and then standardised with the training split's scalar mean and std.

Augmentation (with `data.augment`, the default): Fashion-MNIST only, a random crop 28 from
the image padded by 3 blank pixels and a horizontal flip with probability 1/2 (ours: the
study's CIFAR-10 crop 32 with padding 4 at about the same 1/8 of the side; garments are
mirror-symmetric in class). Without it the study's MLP fits a Fashion-MNIST training subset
inside the windows the walk analyses. MNIST has none (the study trains it without, and
digits are not mirror-symmetric).

Local files are never checksummed (Debian, for one, re-compresses them); downloads are,
against the official MD5s of the .gz files, whatever mirror `data.url` points at.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from sgdwalk.config import DataConfig
from sgdwalk.data.augment import augment_cifar
from sgdwalk.data.download import fetch
from sgdwalk.data.idx import read_idx
from sgdwalk.data.prepare import assemble_dataset, standardise, val_size
from sgdwalk.data.registry import register_dataset
from sgdwalk.data.roots import default_data_root
from sgdwalk.data.split import SPLIT_SEED, stratified_split
from sgdwalk.data.types import Dataset, Split
from sgdwalk.errors import DataError

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_MD5 = MappingProxyType(
    {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
)
FASHION_MNIST_MD5 = MappingProxyType(
    {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
)
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # Zalando's
FASHION_MNIST_SYSTEM = "/usr/share/datasets/fashion-mnist"  # Debian: dataset-fashion-mnist


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX dataset may be found and how to get it."""

    name: str  # registry name, also the folder name under default_data_root()
    url: str  # official base address of the .gz files
    md5: MappingProxyType  # .gz file name -> official MD5
    system_roots: tuple[str, ...] = ()  # folders searched before the cache when root is None
    hint: str = ""  # how to install it, for the error message
    crop_padding: int = 0  # augmentation: random crop from the image padded by this; 0: none
    flip: bool = False  # augmentation: also a horizontal flip with probability 1/2


def find_files(folder: Path) -> dict[str, Path]:
    """The IDX files present in `folder`: base name -> path, preferring raw over .gz."""
    found = {}
    for base in FILES:
        for candidate in (folder / base, folder / f"{base}.gz"):
            if candidate.is_file():
                found[base] = candidate
                break
    return found


def locate(cfg: DataConfig, source: IdxSource) -> tuple[Path, dict[str, Path]]:
    """The folder holding all four files and their paths; downloads the missing ones when
    `cfg.download` is set. Raises DataError saying where it looked and how to get them."""
    if cfg.root is not None:
        folders = [Path(cfg.root).expanduser()]
    else:
        folders = [Path(p) for p in source.system_roots] + [default_data_root() / source.name]
    for folder in folders:
        found = find_files(folder)
        if len(found) == len(FILES):
            return folder, found
    if cfg.download:
        folder = folders[-1]
        base_url = (cfg.url or source.url).rstrip("/") + "/"
        found = find_files(folder)
        progress = sys.stderr.isatty()
        for base in FILES:
            if base not in found:
                name = f"{base}.gz"
                url, md5 = base_url + name, source.md5[name]
                found[base] = fetch(url, folder / name, md5=md5, progress=progress)
        return folder, found
    looked = "; ".join(_describe(folder) for folder in folders)
    raise DataError(
        f"{source.name}: expected {', '.join(FILES)} (raw or .gz), got {looked} "
        f"(to get them: {source.hint}set data.root=FOLDER, or data.download=true)"
    )


def _describe(folder: Path) -> str:
    if not folder.is_dir():
        return f"no folder {folder}"
    missing = [base for base in FILES if base not in find_files(folder)]
    return f"{folder} lacking {', '.join(missing)}"


def read_pair(images_path: Path, labels_path: Path) -> Split:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 in [0, 10) as a Split scaled to [0, 1],
    x of shape (N, 1, 28, 28)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dtype != torch.uint8 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path}: expected {images.shape[0]} uint8 labels, "
            f"got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() and int(labels.max()) > 9:
        raise DataError(f"{labels_path}: expected labels in 0..9, got {int(labels.max())}")
    x = images.unsqueeze(1).to(torch.float32).div_(255.0)
    return Split(x, labels.to(torch.int64))


def load_idx_dataset(cfg: DataConfig, source: IdxSource) -> Dataset:
    """Locate (or download), read, split, standardise and assemble one IDX dataset."""
    folder, files = locate(cfg, source)
    train_file = read_pair(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"])
    test = read_pair(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"])
    val, train = stratified_split(train_file, (val_size(cfg, len(train_file)),), SPLIT_SEED)
    train, val, test = standardise(train, val, test)
    augment = None
    if cfg.augment and source.crop_padding:
        blank = float(train.x.min())  # a 0 pixel after standardisation
        augment = functools.partial(augment_cifar, padding=source.crop_padding, fill=blank,
                                    flip=source.flip)
    return assemble_dataset(cfg, train, val, test, num_classes=10, augment=augment,
                            source=str(folder))


@register_dataset("mnist")
def load_mnist(cfg: DataConfig) -> Dataset:
    """MNIST from `data.root` or default_data_root()/"mnist" (see the module docstring)."""
    # the source is built per call, so tests can monkeypatch the module's constants
    return load_idx_dataset(cfg, IdxSource("mnist", MNIST_URL, MNIST_MD5))


@register_dataset("fashion_mnist")
def load_fashion_mnist(cfg: DataConfig) -> Dataset:
    """Fashion-MNIST from `data.root`, else /usr/share/datasets/fashion-mnist, else
    default_data_root()/"fashion_mnist" (see the module docstring)."""
    source = IdxSource(
        "fashion_mnist",
        FASHION_MNIST_URL,
        FASHION_MNIST_MD5,
        system_roots=(FASHION_MNIST_SYSTEM,),
        hint="apt-get install dataset-fashion-mnist, ",
        crop_padding=3,
        flip=True,
    )
    return load_idx_dataset(cfg, source)
