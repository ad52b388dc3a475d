"""A small CNN with BatchNorm on a fixed synthetic image set, and its walk as a plain loop.

Every integration's test trains this same model on the same batches in the same order and
compares its walk values with `plain_walk`'s.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgdwalk.config import WalkConfig

LR, BATCH, N = 0.1, 16, 64
# probe-set probes only, so that the Hugging Face callback (no batch) runs the same set
PROBE_ONLY = WalkConfig(preset="line", economy="off", line_points=5)


def build_cnn(module: nn.Module) -> None:
    """The layers, as attributes of `module` (so a LightningModule gets the same names)."""
    torch.manual_seed(0)
    module.conv = nn.Conv2d(1, 4, 3, padding=1)
    module.bn = nn.BatchNorm2d(4)
    module.head = nn.Linear(4 * 8 * 8, 3)


def cnn_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module.head(F.relu(module.bn(module.conv(x))).flatten(1))


class DictRows(torch.utils.data.Dataset):
    """(x, y) as Hugging Face style dict rows {"x", "labels"}, for the trainers' loaders."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        build_cnn(self)

    def forward(self, x, labels=None, reduction="mean"):
        logits = cnn_forward(self, x)
        if labels is None:
            return logits
        # Hugging Face style (loss, logits); reduction="none": the per-example losses
        return F.cross_entropy(logits, labels, reduction=reduction), logits


def per_example_ce(output, target):
    return F.cross_entropy(output, target, reduction="none")


def own_per_example_loss(model, batch):
    """The model's own loss on a dict batch, per example (the walk's per_example_loss)."""
    return model(**batch, reduction="none")[0]


@pytest.fixture(scope="session")
def images():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (N,), generator=g)
    return x, y


def plain_walk(images, probes=PROBE_ONLY, accumulate=1, sink=None):
    """The reference: the same training as a plain loop with before_step/after_step
    (`accumulate` micro-batches per step, each backward of loss / accumulate)."""
    from sgdwalk import Walk

    x, y = images
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    walk = Walk(model, probes=probes, loss_fn=per_example_ce, probe_set=(x[:32], y[:32]),
                sink=sink)
    for xb, yb in zip(x.split(BATCH), y.split(BATCH)):
        opt.zero_grad()
        chunks = list(zip(xb.split(BATCH // accumulate), yb.split(BATCH // accumulate)))
        losses = []
        for xm, ym in chunks:
            loss = F.cross_entropy(model(xm), ym)
            (loss / accumulate).backward()
            losses.append(float(loss.detach()))
        walk.before_step(sum(losses) / len(losses), chunks)
        opt.step()
        walk.after_step(opt)
    return walk.table()


def assert_tables_match(got, want, rtol=1e-5, atol=1e-7):
    """Every stored scalar of `want` is in `got` at the same steps, equal to round-off."""
    import numpy as np

    assert list(got.index) == list(want.index)
    scalar = [c for c in want.columns if want[c].map(lambda v: np.ndim(v) == 0).all()]
    assert len(scalar) > 10
    for column in scalar:
        np.testing.assert_allclose(
            got[column].astype(float), want[column].astype(float), rtol=rtol, atol=atol,
            err_msg=column,
        )
