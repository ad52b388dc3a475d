"""The per-example loss contract: a loss maps (output, target) to per-example losses (N,).

Every probe needs the losses of single examples, not only their mean: the line probe's
noise threshold eps is the standard error of per-example differences, and the gradient
noise cuts a batch into micro-batches. So one contract holds everywhere (`Walk.step`, every
probe): `loss_fn(output, target)` returns a tensor of shape (N,), one loss per example, and
training descends its mean. A reducing loss (one number for the batch, such as
`F.mse_loss` or `F.cross_entropy` with their default reduction) is refused at its first
use with a one-line error that says how to fix it.

    cross_entropy   l_j = logsumexp(z_j) - z_{j, y_j}               class labels
    mse             l_j = (1/D) sum_d (z_jd - t_jd)^2                 real targets, or class
                                                                    labels as one-hot rows
    sequence_cross_entropy  l_j = (1/T) sum_t CE(z_jt, y_jt)        next-token targets (N, T)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sgdwalk.errors import ConfigError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each example, l_j = logsumexp(z_j) - z_{j, y_j}, shape (N,).

    The value of `F.cross_entropy(logits, y, reduction="none")` up to round-off, and 2-4x
    faster on CPU for few classes (measured with torch 2.13: 10 classes, 6,656 rows).
    Rows are independent, which lets a sweep apply it once to every point's logits.
    """
    return torch.logsumexp(logits, dim=1) - logits.gather(1, y.unsqueeze(1)).squeeze(1)


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error of each example, averaged over output dims: l_j = (1/D) sum_d
    (z_jd - t_jd)^2, shape (N,). The mean over a batch is `F.mse_loss(output, target)`.

    Args:
        output: (N, D) or (N,) model outputs.
        target: real values with the output's N x D entries (e.g. (N,) for a (N, 1)
            output), or integer class labels (N,), taken as one-hot rows of D entries.
    """
    if not target.is_floating_point():  # class labels: the one-hot targets of the outputs
        target = F.one_hot(target, output.shape[-1]).to(output.dtype)
    if target.numel() != output.numel():
        raise ConfigError(f"mse: expected targets with the output's {tuple(output.shape)} "
                          f"entries, got shape {tuple(target.shape)}")
    diff = output.reshape(len(output), -1) - target.reshape(len(output), -1)
    return diff.square().mean(dim=1)


def sequence_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sequence loss: the mean over positions of the token cross-entropy.

    loss_n = (1/T) sum_t [logsumexp_v logits[n, t, v] - logits[n, t, targets[n, t]]]

    Args: logits (N, T, V) float; targets (N, T) int64 in [0, V).
    Returns: (N,), one value per sequence (the per-example loss contract).
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ConfigError(f"sequence_cross_entropy: expected logits (N, T, V) and targets "
                          f"(N, T), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    n, t, v = logits.shape
    per_token = F.cross_entropy(logits.reshape(n * t, v), targets.reshape(n * t),
                                reduction="none")
    return per_token.view(n, t).mean(dim=1)


# Losses a sweep applies once to the outputs of all its points and chunks stacked: each
# row's loss depends on that row alone. sequence_cross_entropy qualifies too but is left
# out: stacking its (points x N, T, V) logits measured 7-10% slower than chunk by chunk on
# river-valley's GPT (docs/studies.md, "The river-valley study").
ROW_WISE = frozenset({cross_entropy, mse})


def per_example(loss_fn: Loss, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`loss_fn(output, target)`, checked to be per-example losses of shape (N,)."""
    return expect_per_example(loss_fn(output, target), len(output), "loss_fn",
                              "pass reduction='none', or use sgdwalk.losses.cross_entropy "
                              "or .mse")


def expect_per_example(losses, n: int, where: str, fix: str) -> torch.Tensor:
    """`losses` if it is a (n,) tensor; else a one-line ConfigError that starts with
    `where` and ends with how to `fix` it (a reduced loss is the usual cause)."""
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (n,):
        got = f"shape {tuple(losses.shape)}" if isinstance(losses, torch.Tensor) else (
            type(losses).__name__)
        raise ConfigError(f"{where}: expected per-example losses of shape ({n},), got {got}: "
                          f"a reduced loss? {fix}")
    return losses
