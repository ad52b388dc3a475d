"""When evaluations, checkpoints and commits are due, step by step."""

from sgdwalk.config import TrainConfig
from sgdwalk.train.cadence import Cadence


def _due(cadence, what):
    return [s for s in range(1, cadence.total_steps + 1) if getattr(cadence.due(s), what)]


def test_sgd_evaluates_at_epoch_ends_and_checkpoints_there_and_every_n_steps():
    cadence = Cadence.of(TrainConfig(eval_every=2, checkpoint_every=5, flush_every=3),
                         steps_per_epoch=4, total_steps=16)
    assert _due(cadence, "evaluate") == [8, 16]
    assert _due(cadence, "checkpoint") == [4, 5, 8, 10, 12, 15, 16]
    assert _due(cadence, "flush") == [3, 6, 9, 12, 15]
    assert cadence.epoch(8) == 2


def test_a_run_cut_mid_epoch_keeps_its_last_model_but_evaluates_only_at_epoch_ends():
    cadence = Cadence.of(TrainConfig(), steps_per_epoch=4, total_steps=10)
    assert _due(cadence, "evaluate") == [4, 8]
    assert _due(cadence, "checkpoint") == [4, 8, 10]
