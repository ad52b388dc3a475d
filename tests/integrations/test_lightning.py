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
    N,
    assert_tables_match,
    build_cnn,
    cnn_forward,
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


def _fit(images, probes, accumulate=1, batch=BATCH):
    from sgdwalk.integrations.lightning import WalkCallback

    x, y = images
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
    callback = WalkCallback(probes=probes, loss_fn=per_example_ce, probe_set=(x[:32], y[:32]))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accumulate_grad_batches=accumulate,
                        callbacks=[callback])
    trainer.fit(LitCNN(), loader)
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
