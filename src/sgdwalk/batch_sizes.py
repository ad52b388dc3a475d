"""Batches a model with BatchNorm can take: every one the run will cut holds two examples.

BatchNorm in training mode normalises a batch by its own mean and variance, which needs
two or more values per channel; a batch of one example is a ValueError deep inside torch,
steps into the run. `check_batchnorm_batches` finds each batch a run will cut (SGD
mini-batches, GD chunks, GD + noise's estimation batches, and the probe and held-out
chunks the probes normalise by) before anything is written, and names the field to change.
"""

from __future__ import annotations

import torch

from sgdwalk.config import RunConfig
from sgdwalk.errors import ConfigError


def chunk_sizes(n: int, size: int) -> list[int]:
    """Sizes of `tensor.split(size)` on n rows: full chunks, then the rest (if any)."""
    return [size] * (n // size) + ([n % size] if n % size else [])


def check_batchnorm_batches(cfg: RunConfig, model: torch.nn.Module, n_train: int,
                            n_probe: int, n_heldout: int, probing: bool) -> None:
    """Raise a one-line ConfigError when a batch of one example would meet BatchNorm.

    n_train, n_probe, n_heldout: examples in the training split, the probe set and the
    held-out head the probes use; probing: whether any probe runs (they normalise the probe
    chunks under bn_policy "batch" and "recalibrate").
    """
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    o, d, w = cfg.optim, cfg.data, cfg.walk
    if o.algorithm == "sgd":
        _need("optim.batch_size", [o.batch_size], "mini-batch")
    else:
        _need("optim.gd_chunk", chunk_sizes(n_train, o.gd_chunk), "GD chunk",
              f" ({n_train} training examples in chunks of {o.gd_chunk})")
        if o.algorithm == "gd_noise":
            _need("optim.noise_batch", [min(o.noise_batch, n_train)], "noise-estimation batch")
    if not probing or w.bn_policy == "eval":
        return
    _need("data.probe_batch", chunk_sizes(n_probe, d.probe_batch), "probe chunk",
          f" ({n_probe} probe examples in chunks of {d.probe_batch})")
    if "heldout" in w.line_sources:
        _need("data.probe_batch", chunk_sizes(n_heldout, d.probe_batch), "held-out chunk",
              f" ({n_heldout} held-out examples in chunks of {d.probe_batch})")


def _need(field: str, sizes: list[int], what: str, detail: str = "") -> None:
    if sizes and min(sizes) < 2:
        raise ConfigError(f"{field}: expected every {what} to hold 2 or more examples (the "
                          f"model has BatchNorm), got one of {min(sizes)}{detail}")
