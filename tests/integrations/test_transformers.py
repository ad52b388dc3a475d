"""The Hugging Face callback: the walk of a Trainer run equals the plain loop's."""

from __future__ import annotations

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError

from .conftest import (
    BATCH,
    LR,
    PROBE_ONLY,
    DictRows,
    SmallCNN,
    assert_tables_match,
    own_per_example_loss,
    per_example_ce,
    plain_walk,
)

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")


class _InOrder(transformers.Trainer):
    """The plain loop's batches, in its order (the Trainer shuffles by default)."""

    def get_train_dataloader(self):
        return torch.utils.data.DataLoader(self.train_dataset, batch_size=BATCH,
                                           collate_fn=self.data_collator)


def _train(images, tmp_path, probes, own_loss=False):
    from sgdwalk.integrations.transformers import WalkCallback

    x, y = images
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH, num_train_epochs=1,
        learning_rate=LR, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
        weight_decay=0.0, warmup_steps=0, report_to=[], save_strategy="no",
        logging_strategy="no", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
    if own_loss:  # the model as the Trainer calls it: model(**batch), on a dict probe set
        callback = WalkCallback(probes=probes, per_example_loss=own_per_example_loss,
                                probe_set={"x": x[:32], "labels": y[:32]})
    else:
        callback = WalkCallback(probes=probes, loss_fn=per_example_ce,
                                probe_set=(x[:32], y[:32]))
    trainer = _InOrder(model=SmallCNN(), args=args, train_dataset=DictRows(x, y),
                       data_collator=lambda rows: {k: torch.stack([r[k] for r in rows])
                                                   for k in rows[0]},
                       callbacks=[callback])
    trainer.train()
    return callback.walk.table()


def test_trainer_walk_equals_the_plain_loop(images, tmp_path):
    got = _train(images, tmp_path, PROBE_ONLY)
    assert_tables_match(got, plain_walk(images))


def test_batch_probes_are_refused_in_one_line(images, tmp_path):
    with pytest.raises(ConfigError, match="probe set only.*econ"):
        _train(images, tmp_path, WalkConfig(preset="economy"))


def test_the_models_own_loss_on_a_dict_probe_set_equals_the_plain_loop(images, tmp_path):
    got = _train(images, tmp_path, PROBE_ONLY, own_loss=True)
    assert_tables_match(got, plain_walk(images))
