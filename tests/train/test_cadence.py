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


def test_full_batch_runs_evaluate_and_checkpoint_in_steps_not_at_every_one_step_epoch():
    default = Cadence.of(TrainConfig(), steps_per_epoch=1, total_steps=120, full_batch=True)
    assert _due(default, "evaluate") == list(range(10, 121, 10))
    assert _due(default, "checkpoint") == [50, 100, 120]
    chosen = Cadence.of(TrainConfig(eval_every=39, checkpoint_every=7), steps_per_epoch=1,
                        total_steps=80, full_batch=True)
    assert _due(chosen, "evaluate") == [39, 78, 80]  # a study's eval_every is kept
    assert _due(chosen, "checkpoint") == [7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 80]
    every = Cadence.of(TrainConfig(eval_every_steps=1, checkpoint_every=1), steps_per_epoch=1,
                       total_steps=5, full_batch=True)
    assert _due(every, "evaluate") == _due(every, "checkpoint") == [1, 2, 3, 4, 5]


def test_eval_every_steps_overrides_epochs_for_sgd_too():
    cadence = Cadence.of(TrainConfig(eval_every=3, eval_every_steps=6), steps_per_epoch=4,
                         total_steps=16)
    assert _due(cadence, "evaluate") == [6, 12, 16]
