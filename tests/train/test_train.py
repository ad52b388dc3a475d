"""The training loop: determinism, exact resumption, GD scaling, divergence, noise."""

import math
import warnings

import pytest
import torch

from sgdwalk.config import replace
from sgdwalk.experiment import build_trainer, resume, train
from sgdwalk.store import RunStore, read_run


def _table(run_dir):
    return read_run(run_dir).sort_index()


def test_same_seed_gives_identical_rows(tiny_config, tmp_path):
    cfg = tiny_config(**{"walk.preset": "cheap"})
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    assert a.status == b.status == "completed"
    ta, tb = _table(a.run_dir), _table(b.run_dir)
    assert ta.shape[0] == 2 * (1257 // 64) + 1  # every update plus the theta_0 row
    assert ta.equals(tb)


def test_different_seed_differs(tiny_config, tmp_path):
    a = train(tiny_config(), tmp_path)
    b = train(tiny_config(**{"train.seed": 7}), tmp_path)
    assert a.run_dir != b.run_dir
    assert not _table(a.run_dir)["loss"].equals(_table(b.run_dir)["loss"])


@pytest.mark.parametrize("halt", [5, 19, 27])
def test_resume_gives_the_rows_of_an_uninterrupted_run(tiny_config, tmp_path, halt):
    cfg = tiny_config(**{"train.checkpoint_every": 4, "train.flush_every": 3,
                         "walk.preset": "cheap"})
    whole = train(cfg, tmp_path / "whole")
    stopped = train(cfg, tmp_path / "cut", halt_at_step=halt)
    assert stopped.status == "stopped"
    partial = _table(stopped.run_dir)
    assert partial.index.max() < whole.steps  # the kill really lost the tail
    done = resume(stopped.run_dir)
    assert done.status == "completed" and done.steps == whole.steps
    assert _table(done.run_dir).equals(_table(whole.run_dir))
    with RunStore.open(done.run_dir) as s, RunStore.open(whole.run_dir) as w:
        ms, mw = s.latest_checkpoint()[1]["model"], w.latest_checkpoint()[1]["model"]
    assert all(torch.equal(ms[k], mw[k]) for k in mw)


def test_train_again_continues_instead_of_duplicating(tiny_config, tmp_path):
    cfg = tiny_config()
    first = train(cfg, tmp_path, halt_at_step=10)
    again = train(cfg, tmp_path)
    assert again.run_dir == first.run_dir and again.status == "completed"
    assert _table(again.run_dir).equals(_table(train(cfg, tmp_path / "ref").run_dir))


def _one_manual_step(cfg, out):
    """One update of the real loop: (theta_0, theta_1, gradient of the mean loss at theta_0)."""
    cfg = replace(cfg, **{"train.max_steps": 1})
    fresh = build_trainer(cfg)  # the run's seed: its model holds theta_0
    before = [p.detach().clone() for p in fresh.model.parameters()]
    torch.nn.functional.cross_entropy(fresh.model(fresh.batches.x), fresh.batches.y).backward()
    grad = [p.grad.clone() for p in fresh.model.parameters()]
    result = train(cfg, out)
    with RunStore.open(result.run_dir) as store:
        after = store.latest_checkpoint()[1]["model"]
    return before, [after[name] for name, _ in fresh.model.named_parameters()], grad


def test_gd_step_is_lr_times_mean_gradient(tiny_config, tmp_path):
    """Full-batch GD: one step moves theta by -lr * grad of the *mean* loss however the
    split is chunked; gd_sum_chunks reproduces the original x n_chunks."""
    cfg = tiny_config(**{"optim.algorithm": "gd", "optim.gd_chunk": 250,
                         "data.train_size": 1000, "model.batchnorm": "false",
                         "data.augment": "false", "walk.preset": "off"})
    before, after, grad = _one_manual_step(cfg, tmp_path)
    for b, a, g in zip(before, after, grad):
        torch.testing.assert_close(a, b - 0.1 * g, rtol=1e-5, atol=1e-6)
    before_s, after_s, _ = _one_manual_step(replace(cfg, **{"optim.gd_sum_chunks": True}),
                                            tmp_path)
    for b, a, bs, as_ in zip(before, after, before_s, after_s):
        torch.testing.assert_close(as_ - bs, 4 * (a - b), rtol=1e-4, atol=1e-6)


def test_divergence_is_recorded_not_raised(tiny_config, tmp_path):
    result = train(tiny_config(**{"optim.lr": 1e12}), tmp_path)
    assert result.status == "diverged"
    with RunStore.open(result.run_dir) as s:
        meta = s.meta()
        table = s.scalars()
    assert meta["status"] == "diverged"
    assert meta["diverged_step"] == result.steps
    assert table.loc[result.steps, "diverged"] == 1
    assert not math.isfinite(table.loc[result.steps, "loss"])


def test_gd_noise_matched_std_is_recorded_and_shrinks_with_batch(tiny_config, tmp_path):
    stds = {}
    for b in (16, 256):
        cfg = tiny_config(**{"optim.algorithm": "gd_noise", "optim.noise_batch": b,
                             "train.epochs": 3, "optim.gd_chunk": 2000})
        result = train(cfg, tmp_path)
        with RunStore.open(result.run_dir) as s:
            stds[b] = s.meta()["noise_std"]
            rows = s.scalars()
        assert rows.loc[-1, "noise_std"] == stds[b] > 0
        assert rows.index.max() == 2  # three full-batch steps
    # SGD noise variance scales like 1/B: std ratio about sqrt(256/16) = 4.
    assert 2.0 < stds[16] / stds[256] < 8.0


@pytest.mark.parametrize("algorithm", ["gd", "gd_noise"])
def test_full_batch_runs_resume_exactly_from_step_cadence_checkpoints(tiny_config, tmp_path,
                                                                      algorithm):
    """GD checkpoints every checkpoint_every steps (not at every one-step epoch) and
    evaluates every 10 steps; cut at step 11 it resumes from step 8, noise state included."""
    cfg = tiny_config(**{"optim.algorithm": algorithm, "optim.gd_chunk": 500,
                         "train.epochs": 21, "train.checkpoint_every": 4,
                         "walk.preset": "economy"})
    whole = train(cfg, tmp_path / "whole")
    table = _table(whole.run_dir)
    assert list(table["train_loss"].dropna().index) == [-1, 9, 19, 20]
    stopped = train(cfg, tmp_path / "cut", halt_at_step=11)
    with RunStore.open(stopped.run_dir) as s:
        assert s.latest_checkpoint()[0] == 8
    done = resume(stopped.run_dir)
    assert done.status == "completed" and done.steps == 21 and done.final == whole.final
    assert _table(done.run_dir).equals(table)
    with RunStore.open(done.run_dir) as s, RunStore.open(whole.run_dir) as w:
        ms, mw = s.latest_checkpoint()[1]["model"], w.latest_checkpoint()[1]["model"]
    assert all(torch.equal(ms[k], mw[k]) for k in mw)


def test_adam_by_name(tiny_config, tmp_path):
    result = train(tiny_config(**{"optim.optimizer": "Adam", "optim.lr": 0.01}), tmp_path)
    assert result.status == "completed" and result.final["train_acc"] > 0.5


def test_a_window_past_the_runs_end_is_warned_of_in_one_line(tiny_config):
    """A study's named steps that the run never reaches (the river-valley paper scale's
    line windows at 3,800+ in runs that train.epochs = 1 ended at step 1,113) are measured
    nowhere: the run says so before it starts, and still runs."""
    from sgdwalk.errors import SgdwalkWarning
    from sgdwalk.probes.schedule import listed_beyond, parse_schedule

    assert listed_beyond(parse_schedule("steps:5,90,91+every:4", 10), 40) == ([90, 91], 3)
    assert listed_beyond(parse_schedule("epochs:1,3,5", 10), 40) == ([40], 3)  # epoch 5: 40
    assert listed_beyond(parse_schedule("every:4", 10), 40) == ([], 0)
    cfg = tiny_config(**{"walk.line": "steps:1,900,901"})
    with pytest.warns(SgdwalkWarning, match=r"^walk\.line: 2 of its 3 named steps \(900-901\) "
                                            r"lie past the run's last step \d+ "):
        build_trainer(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SgdwalkWarning)
        build_trainer(tiny_config(**{"walk.line": "steps:1,2"}))  # nothing past the end
