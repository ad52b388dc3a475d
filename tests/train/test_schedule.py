"""lr schedules against their closed forms at the boundaries (end of warmup, start and end
of decay, milestones), their config checks, and a scheduled run whose stored lr is the
applied one and which resumes exactly; AdamW's decoupled weight decay and SGD's momentum
by their exact steps."""

from __future__ import annotations

import math

import pytest

from sgdwalk.config import OptimConfig, load_config
from sgdwalk.errors import ConfigError
from sgdwalk.experiment import resume, train
from sgdwalk.store import read_run
from sgdwalk.train.schedule import make_schedule


def sched(total=100, **kw):
    return make_schedule(OptimConfig(**kw), total)


def test_constant_without_warmup_is_one_everywhere_and_leaves_the_lr_alone():
    s = sched()
    assert s.is_constant
    assert {s.factor(t) for t in range(100)} == {1.0}
    assert not sched(warmup_steps=1).is_constant


def test_warmup_rises_linearly_to_the_peak_at_its_last_step():
    s = sched(schedule="constant", warmup_steps=10)
    assert s.factor(0) == pytest.approx(0.1, abs=1e-15)  # (0 + 1) / 10: never a zero step
    assert s.factor(4) == pytest.approx(0.5, abs=1e-15)
    assert s.factor(9) == 1.0 and s.factor(10) == 1.0  # end of warmup: the peak
    assert sched(warmup_fraction=0.25).warmup == 25  # a fraction of the run's steps
    assert [s.phase(t) for t in (0, 9, 10)] == ["warmup", "warmup", "stable"]


def test_cosine_starts_at_the_peak_after_warmup_and_ends_at_lr_end():
    s = sched(schedule="cosine", warmup_steps=20, lr_end_fraction=0.1)
    assert s.factor(19) == 1.0  # end of warmup
    assert s.factor(20) == 1.0  # p = 0: the peak
    assert s.factor(60) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-15)  # p = 1/2
    p = (99 - 20) / 80  # the last update
    assert s.factor(99) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * p)) / 2,
                                         abs=1e-15)
    assert s.factor(100) == pytest.approx(0.1, abs=1e-15)  # e reached at T, after the run
    assert all(s.factor(t) > s.factor(t + 1) for t in range(20, 99))  # strictly decays


@pytest.mark.parametrize("shape, mid", [("linear", 0.5), ("cosine", 0.5),
                                        ("sqrt", 1 - math.sqrt(0.5))])
def test_wsd_is_flat_until_the_decay_then_follows_its_shape(shape, mid):
    s = sched(schedule="wsd", warmup_steps=10, decay_fraction=0.2, decay_shape=shape)
    assert s.decay_start == 80
    assert s.factor(9) == 1.0 and s.factor(79) == 1.0  # stable from warmup to decay start
    assert s.factor(80) == 1.0  # q = 0: the decay's first step still has the peak
    assert s.factor(90) == pytest.approx(mid, abs=1e-15)  # q = 1/2
    assert s.factor(100) == pytest.approx(0.0, abs=1e-15)  # q = 1 at T
    assert 0 < s.factor(99) < s.factor(98)
    assert [s.phase(t) for t in (5, 79, 80, 99)] == ["warmup", "stable", "decay", "decay"]


def test_step_multiplies_by_gamma_at_each_milestone():
    s = sched(schedule="step", step_milestones=(0.5, 0.75), step_gamma=0.1)
    assert [s.factor(t) for t in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01], abs=1e-15)


@pytest.mark.parametrize("settings, message", [
    ({"schedule": "linear"}, "optim.schedule: expected one of constant, step, cosine, wsd"),
    ({"decay_shape": "exp"}, "optim.decay_shape: expected one of linear, cosine, sqrt"),
    ({"warmup_steps": -1}, "optim.warmup_steps: expected an integer >= 0, got -1"),
    ({"warmup_fraction": 1.5}, r"optim.warmup_fraction: expected a number in \[0, 1\]"),
    ({"warmup_steps": 5, "warmup_fraction": 0.1}, "optim.warmup_fraction: expected 0 when"),
    ({"step_milestones": (0.5, 1.0)}, r"optim.step_milestones: expected fractions in \(0, 1\)"),
    ({"step_gamma": 0.0}, r"optim.step_gamma: expected a number in \(0, 1\]"),
])
def test_bad_schedule_settings_are_one_line(settings, message):
    with pytest.raises(ConfigError, match=message):
        OptimConfig(**settings)


def test_a_warmup_or_decay_that_does_not_fit_the_run_is_refused():
    with pytest.raises(ConfigError, match="optim.warmup_steps: expected fewer than the run's "
                                          "100 steps, got 100"):
        sched(warmup_steps=100)
    with pytest.raises(ConfigError, match="optim.decay_fraction: expected a decay of 1 to 10 "
                                          "steps"):
        sched(schedule="wsd", warmup_steps=90, decay_fraction=0.2)
    with pytest.raises(ConfigError, match="got 0 steps"):
        sched(schedule="wsd", decay_fraction=0.001)


WSD = ["train.epochs=1", "train.max_steps=30", "train.progress=false",
       "train.checkpoint_every=10", "walk.preset=cheap", "optim.schedule=wsd",
       "optim.warmup_steps=5", "optim.decay_fraction=0.5", "optim.decay_shape=cosine"]


def test_the_stored_lr_is_the_applied_scheduled_lr_and_a_killed_run_resumes_exactly(tmp_path):
    cfg = load_config("default", WSD)
    whole = train(cfg, tmp_path / "whole")
    table = read_run(whole.run_dir).sort_index()
    s = make_schedule(cfg.optim, 30)
    lr = table["lr"].loc[0:29].to_numpy()
    assert lr == pytest.approx([cfg.optim.lr * s.factor(t) for t in range(30)], rel=1e-15)
    assert lr[0] == pytest.approx(cfg.optim.lr / 5) and lr[14] == cfg.optim.lr
    assert lr[15] == cfg.optim.lr > lr[16] > lr[29] > 0  # the decay starts at step 15

    cut = train(cfg, tmp_path / "cut", halt_at_step=17)  # between checkpoints, in the decay
    assert cut.status == "stopped"
    done = resume(cut.run_dir, progress=False)
    assert done.status == "completed"
    again = read_run(done.run_dir).sort_index()
    assert again[["loss", "lr", "update_norm"]].equals(table[["loss", "lr", "update_norm"]])


def test_adamw_decays_weights_decoupled_and_sgd_momentum_accumulates():
    """Exact one- and two-step answers of the optimizers the config names."""
    import torch

    from sgdwalk.train.optim import make_optimizer

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = make_optimizer(OptimConfig(optimizer="AdamW", lr=0.1, weight_decay=0.5), [p])
    p.grad = torch.zeros(2, dtype=torch.float64)  # no gradient: Adam's step is 0 / (0 + eps)
    opt.step()
    # decoupled: p <- p (1 - lr wd), whatever the gradient's scale (not L2 through Adam)
    torch.testing.assert_close(p.detach(), torch.tensor([0.95, -1.9], dtype=torch.float64),
                               rtol=0, atol=1e-15)

    q = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = make_optimizer(OptimConfig(optimizer="SGD", lr=0.1, momentum=0.9), [q])
    for _ in range(2):
        q.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
    # v1 = g, v2 = 0.9 g + g: q = -0.1 (1 + 1.9)
    assert float(q.detach()) == pytest.approx(-0.29, abs=1e-15)
