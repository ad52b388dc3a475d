"""The Lightning callback: the walk of a Lightning fit equals the plain loop's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sgdwalk.config import WalkConfig

from .conftest import (
    BATCH,
    LR,
    PROBE_ONLY,
    DictRows,
    N,
    assert_tables_match,
    build_cnn,
    cnn_forward,
    own_per_example_loss,
    per_example_ce,
    plain_walk,
)

L = pytest.importorskip("lightning.pytorch")


class LitCNN(L.LightningModule):
    def __init__(self):
        super().__init__()
        build_cnn(self)

    def forward(self, x):
        return cnn_forward(self, x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class LitDictCNN(LitCNN):
    """Hugging Face style: dict batches, and a forward that computes its own loss."""

    def forward(self, x, labels=None, reduction="mean"):
        logits = cnn_forward(self, x)
        return F.cross_entropy(logits, labels, reduction=reduction), logits

    def training_step(self, batch, batch_idx):
        return self(**batch)[0]


def _fit(images, probes, accumulate=1, batch=BATCH, dicts=False):
    from sgdwalk.integrations.lightning import WalkCallback

    x, y = images
    if dicts:
        data, module = DictRows(x, y), LitDictCNN()
        callback = WalkCallback(probes=probes, per_example_loss=own_per_example_loss,
                                probe_set={"x": x[:32], "labels": y[:32]})
    else:
        data, module = torch.utils.data.TensorDataset(x, y), LitCNN()
        callback = WalkCallback(probes=probes, loss_fn=per_example_ce,
                                probe_set=(x[:32], y[:32]))
    loader = torch.utils.data.DataLoader(data, batch_size=batch)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accumulate_grad_batches=accumulate,
                        callbacks=[callback])
    trainer.fit(module, loader)
    return callback.walk.table()


def test_lightning_walk_equals_the_plain_loop(images):
    got = _fit(images, PROBE_ONLY)
    assert_tables_match(got, plain_walk(images))


def test_lightning_walk_sees_the_batch_and_loss(images):
    probes = WalkConfig(preset="economy")
    got = _fit(images, probes)
    assert "econ_height" in got.columns
    assert_tables_match(got, plain_walk(images, probes=probes))


def test_accumulated_micro_batches_make_one_walk_step(images):
    probes = WalkConfig(preset="economy")
    got = _fit(images, probes, accumulate=2, batch=BATCH // 2)
    assert len(got) == N // BATCH
    # two micro-batches of 8 per optimizer step, as a plain loop that accumulates
    assert_tables_match(got, plain_walk(images, probes=probes, accumulate=2))


def test_dict_batches_and_the_modules_own_loss_walk_like_the_plain_loop(images):
    probes = WalkConfig(preset="line", line_points=5)  # economy and the probe-set line
    got = _fit(images, probes, accumulate=2, batch=BATCH // 2, dicts=True)
    assert len(got) == N // BATCH + 1  # the header row and one row per optimizer step
    assert "econ_height" in got.columns and "line_probe_floor_a" in got.columns
    assert_tables_match(got, plain_walk(images, probes=probes, accumulate=2))
