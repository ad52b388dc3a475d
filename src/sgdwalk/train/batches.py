"""The batches of a run in order: shuffled mini-batches (SGD) or the whole split (GD).

Data order and augmentation come from one generator seeded by the run's seed; its state and
the epoch's permutation are the whole state, so a resumed run cuts the same batches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sgdwalk.config import OptimConfig
from sgdwalk.errors import ConfigError

Chunks = list[tuple[torch.Tensor, torch.Tensor]]


class Batches:
    """The global batch of every update.

    SGD: each epoch draws a permutation of the n training examples and cuts n // B
    mini-batches of B = cfg.batch_size from it (the remainder is dropped). Full-batch GD:
    every update sees the whole split, cut into chunks of cfg.gd_chunk (memory only: the
    loop weights each chunk so that the gradient is that of the mean over all n).

    Args:
        x, y: the training split on the training device.
        cfg: the optimizer section (algorithm, batch_size, gd_chunk).
        augment: (x, generator) -> augmented x, or None.
        seed: seed of the data generator.
        world: processes sharing each global batch (a mini-batch must split evenly).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cfg: OptimConfig,
                 augment: Callable | None, seed: int, world: int = 1):
        n = len(y)
        self.full_batch = cfg.algorithm != "sgd"
        if not self.full_batch and cfg.batch_size > n:
            raise ConfigError(f"optim.batch_size: expected at most the {n} training examples, "
                              f"got {cfg.batch_size}")
        if not self.full_batch and cfg.batch_size % world:
            raise ConfigError(f"optim.batch_size: expected a multiple of the {world} "
                              f"processes, got {cfg.batch_size}")
        self.x, self.y, self.augment = x, y, augment
        self.batch_size, self.chunk = cfg.batch_size, cfg.gd_chunk
        self.steps_per_epoch = 1 if self.full_batch else n // cfg.batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.arange(n)

    def batch(self, step: int) -> Chunks:
        """The chunks of update `step` (its first update of an epoch draws the order)."""
        if self.full_batch:
            return [(self._augmented(x), y) for x, y in zip(self.x.split(self.chunk),
                                                            self.y.split(self.chunk))]
        pos, b = step % self.steps_per_epoch, self.batch_size
        if pos == 0:
            self.perm = torch.randperm(len(self.y), generator=self.generator)
        idx = self.perm[pos * b:(pos + 1) * b].to(self.y.device)
        return [(self._augmented(self.x[idx]), self.y[idx])]

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.augment is None else self.augment(x, self.generator)

    def state_dict(self) -> dict:
        return {"perm": self.perm, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.perm = state["perm"]
        self.generator.set_state(state["generator"])
