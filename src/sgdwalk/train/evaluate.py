"""Loss and accuracy of the trained parameters on whole splits, in eval mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate_splits(model: torch.nn.Module, splits: dict, device: torch.device,
                    chunk: int = 1000, loss_sum=None) -> dict:
    """{name}_loss and {name}_acc of each non-empty split, in eval mode (BatchNorm with its
    running statistics, no dropout); the model's mode is restored.

    loss = (1/N) sum_j l(z_j, y_j) (l: cross-entropy, or `loss_sum(z, y)` = the sum over a
    chunk of the run's own loss), acc = (1/N) #{j : argmax z_j = y_j}, with z_j the logits
    of example j; for sequences (logits (N, T, V), targets (N, T)) acc is per token:
    (1/(N T)) #{(j, t) : argmax z_jt = y_jt}. splits: name -> Split (x, y on any device;
    moved `chunk` rows at a time).
    """
    was = model.training
    model.eval()
    out = {}
    for name, split in splits.items():
        if len(split) == 0:
            continue
        total, correct = 0.0, 0
        per_row = split.y[0].numel()  # 1, or the T tokens of a sequence
        for x, y in zip(split.x.split(chunk), split.y.split(chunk)):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total += float(loss_sum(logits, y) if loss_sum is not None
                           else F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
        out[f"{name}_loss"] = total / len(split)
        out[f"{name}_acc"] = correct / (len(split) * per_row)
    model.train(was)
    return out
