"""The two containers every loader returns: a `Split` of examples and a `Dataset` of splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sgdwalk.errors import DataError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


# eq=False: field-wise == on tensors is ambiguous; splits compare by identity.
@dataclass(frozen=True, eq=False)
class Split:
    """Examples and their labels, ready for a model: images and classes, or token sequences.

    Attributes:
        x: float32 inputs, shape (N, *input_shape), normalised, on the CPU; or, for a
            language model, int64 token ids of shape (N, T).
        y: int64 class labels in [0, num_classes), shape (N,); or, with token ids, the
            next-token targets, shape (N, T) like x.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if self.x.dtype == torch.int64:  # token ids: one target per position
            if self.x.ndim != 2 or self.y.dtype != torch.int64 or self.y.shape != self.x.shape:
                raise DataError(
                    f"split: expected int64 token ids x and targets y of one shape (N, T), "
                    f"got {tuple(self.x.shape)} {self.x.dtype} and {tuple(self.y.shape)} "
                    f"{self.y.dtype}"
                )
            return
        if self.x.dtype != torch.float32:
            raise DataError(
                f"split x: expected dtype float32, got {self.x.dtype} (int64 is for token ids)"
            )
        if self.y.dtype != torch.int64:
            raise DataError(f"split y: expected dtype int64, got {self.y.dtype}")
        if self.y.ndim != 1 or self.x.ndim < 2 or self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"split: expected x of shape (N, ...) and y of shape (N,), "
                f"got {tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return self.y.shape[0]

    def take(self, index: torch.Tensor | slice) -> Split:
        """The examples at `index` (a slice or an int64 index tensor), as a new Split."""
        return Split(self.x[index], self.y[index])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: its splits, the fixed probe set and what a run needs to know.

    Attributes:
        name: registry name, e.g. "cifar10".
        train: the training split (after `data.val_size` and `data.train_size`).
        val: held out of the training file; may have 0 rows.
        test: the official test split.
        probe: fixed seeded subset of `train`, un-augmented, in a fixed order (`probe_subset`).
        num_classes: number of classes; labels lie in [0, num_classes).
        input_shape: shape of one example, e.g. (1, 8, 8), (1, 28, 28), (3, 32, 32), or
            (T,) for token sequences of length T.
        augment: maps a training mini-batch x (B, *input_shape) and a torch.Generator to an
            augmented batch of the same shape, deterministically given the generator; None
            when the dataset has no augmentation (or `data.augment` is false).
        source: where the data came from: a folder path, "scikit-learn" or "generated"; a
            text corpus adds its sha256 and size, so the run's meta.json identifies it.
    """

    name: str
    train: Split
    val: Split
    test: Split
    probe: Split
    num_classes: int
    input_shape: tuple[int, ...]
    augment: Augment | None
    source: str

    def __post_init__(self):
        for split_name in ("train", "val", "test", "probe"):
            split = getattr(self, split_name)
            if tuple(split.x.shape[1:]) != tuple(self.input_shape):
                raise DataError(
                    f"{self.name} {split_name}: expected examples of shape {self.input_shape}, "
                    f"got {tuple(split.x.shape[1:])}"
                )
            if len(split) and not 0 <= int(split.y.min()) <= int(split.y.max()) < self.num_classes:
                raise DataError(
                    f"{self.name} {split_name}: expected labels in [0, {self.num_classes}), "
                    f"got [{int(split.y.min())}, {int(split.y.max())}]"
                )
