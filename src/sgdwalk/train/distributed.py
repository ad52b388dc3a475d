"""Data parallelism under `torchrun`: one run trained by several processes.

    torchrun --standalone --nproc_per_node 2 -m sgdwalk.cli train CONFIG [--set ...]

Every rank draws the same global batch (the data generator is seeded alike), trains on its
contiguous shard of it, and averages the gradients with one all-reduce, so the update is
the one a single process would take on the global batch. The walk then sees the global
loss, the averaged gradient and the *global* batch as its "batch" source, so every probe
value equals the single-process value on the same global batch (up to the order of float
sums). BatchNorm normalises each rank's shard, as in standard DDP; runs with BatchNorm
therefore differ from a single process (SyncBatchNorm is GPU-only).

Rank 0 alone writes the run store; the other ranks read its checkpoints when resuming.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from sgdwalk.errors import ConfigError


@dataclass(frozen=True)
class Parallel:
    """Where this process stands in a data-parallel run (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"  # where collective flags live (gloo: cpu, nccl: cuda)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> Parallel:
        """Join the process group that `torchrun` describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), str(device))

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (its size must divide evenly)."""
        if not self.active:
            return x
        n = x.shape[0]
        if n % self.world:
            raise ConfigError(
                f"optim.batch_size: expected a multiple of the {self.world} processes, got {n}"
            )
        size = n // self.world
        return x[self.rank * size : (self.rank + 1) * size]

    def share(self, chunks: list, full_batch: bool) -> list:
        """The part of a global batch this process computes: all of it when alone; under
        torchrun its contiguous shard of a mini-batch, or every world-th GD chunk."""
        if not self.active:
            return chunks
        if full_batch:
            if len(chunks) % self.world:
                raise ConfigError(f"optim.gd_chunk: expected the training split to make a "
                                  f"multiple of {self.world} chunks, got {len(chunks)}")
            return chunks[self.rank :: self.world]
        return [(self.shard(x), self.shard(y)) for x, y in chunks]

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce `tensor` in place to its mean over ranks."""
        if self.active:
            dist.all_reduce(tensor)
            tensor.div_(self.world)
        return tensor

    def average_gradients(self, params) -> None:
        """Replace every .grad by its mean over ranks (one flat all-reduce)."""
        if not self.active:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.mean_(flat)
        torch._foreach_copy_(grads, [v.view_as(g) for v, g in zip(flat.split(
            [g.numel() for g in grads]), grads)])

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any (for stopping together)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for when alone)."""
        if self.active:
            dist.barrier()


def leave_process_group(code: int = 0) -> NoReturn:
    """End a process that ran FSDP2: a barrier, `destroy_process_group`, then exit at once.

    torch 2.13 on CPU/gloo can abort such a process as Python tears down ("terminate
    called without an active exception", SIGABRT), after all its work and with no sgdwalk
    in it too: 1 of 8 plain FSDP2 loops here, 1 of 8 runs of tests/distributed/fsdp_walk.py
    and 3 of 12 with only the barrier. Leaving without the interpreter's teardown
    (`os._exit`, after flushing stdout and stderr) avoided it in 20 of 20 runs. Nothing
    registered with `atexit` runs.
    """
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

