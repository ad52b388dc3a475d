"""Claims CAT1-CAT3 (the catapult) on constructed full-batch GD runs built to give each
verdict; the rules are in docs/claims.md ("Catapult")."""

import numpy as np
import pandas as pd

from sgdwalk.analysis import CONTRADICTED, INCONCLUSIVE, MISSING, SUPPORTED, decide_claims
from sgdwalk.analysis.frames import Tables
from sgdwalk.analysis.synthetic import run_frame

N_BOOT = 200
LAMBDA0 = 20.0


def decide(table, cid, metas=None):
    source = Tables.from_frames(table, metas=metas) if metas else table
    (claim,) = decide_claims(source, n_boot=N_BOOT, only=[cid])
    return claim


def run(run_id, c, spike=1.0, final=None, n=300, status="completed", seed=0, every=5):
    """A GD run with eta x lambda_0 = c: the loss falls as 1 / (1 + t / 20), multiplied by
    `spike` at steps 3-5; eta x lambda_max measured every `every` steps, c at step 0 and
    moving linearly to `final` (default: stays c) by step 20."""
    lr = c / LAMBDA0
    t = np.arange(n)
    loss = 1 / (1 + t / 20)
    loss = np.where((t >= 3) & (t <= 5), loss * spike, loss)
    end = c if final is None else final
    lr_lambda = np.where(t < 20, c + (end - c) * t / 20, end)
    sharp = np.where(t % every == 0, lr_lambda, np.nan)
    cols = {"loss": loss, "sharp_lr_lambda": sharp, "sharp_lambda_max": sharp / lr}
    if status == "diverged":
        cols["loss"] = np.where(t < n - 1, loss * 10.0 ** t, np.inf)
    return run_frame(run_id, cols, steps_per_epoch=1, lr=lr, algorithm="gd",
                     batch_size=1257, seed=seed, status=status,
                     config={"train.loss": "mse", "optim.lr_over_lambda0": c})


def table(*runs):
    return pd.concat(runs, ignore_index=True)


def lazy_and_catapult(lazy_spike=1.0, cat_spike=10.0, cat_final=0.7):
    return table(*(run(f"lazy{s}", 1.0, lazy_spike, seed=s) for s in (1, 2)),
                 *(run(f"cat{s}", 3.0, cat_spike, cat_final, seed=s) for s in (1, 2)))


# ---------------------------------------------------------------- CAT1


def test_cat1_supported_when_only_the_catapult_runs_spike():
    c = decide(lazy_and_catapult(), "CAT1")
    assert c.verdict == SUPPORTED
    assert {p.name: p.value for p in c.parts} == {"share_spike_catapult": 1.0,
                                                  "share_spike_lazy": 0.0}
    assert c.details["per_run"]["cat1"]["regime"] == "catapult"
    assert c.details["per_run"]["lazy1"]["c"] == 1.0


def test_cat1_contradicted_when_the_lazy_runs_spike_and_the_catapult_ones_do_not():
    c = decide(lazy_and_catapult(lazy_spike=10.0, cat_spike=1.5), "CAT1")
    assert c.verdict == CONTRADICTED
    assert {p.name: p.verdict for p in c.parts} == {"share_spike_catapult": CONTRADICTED,
                                                    "share_spike_lazy": CONTRADICTED}


def test_cat1_inconclusive_when_half_the_lazy_runs_spike():
    t = table(run("lazy1", 1.0, 10.0, seed=1), run("lazy2", 1.0, seed=2),
              *(run(f"cat{s}", 3.0, 10.0, 0.7, seed=s) for s in (1, 2)))
    c = decide(t, "CAT1")
    assert c.verdict == INCONCLUSIVE and c.headline.name == "share_spike_lazy"


def test_cat1_without_lazy_runs_still_needs_them():
    c = decide(table(run("cat1", 3.0, 10.0, 0.7)), "CAT1")
    assert c.verdict == INCONCLUSIVE and "< 2" in c.needs
    assert [p.name for p in c.parts] == ["share_spike_catapult"]


def test_cat1_reads_c_from_the_trainer_record_before_the_probe():
    # the probe at step 0 says 1.0 (lazy); the trainer recorded lr x lambda_0 = 3 (catapult)
    t = table(run("a", 1.0, 10.0), run("b", 1.0, 1.0, seed=1))
    metas = {"a": {"lambda0": 30.0, "lr": 0.1}}
    c = decide(t, "CAT1", metas)
    assert c.details["per_run"]["a"]["regime"] == "catapult"
    assert c.details["per_run"]["b"]["regime"] == "lazy"
    assert c.verdict == SUPPORTED


# ---------------------------------------------------------------- CAT2


def test_cat2_supported_when_catapult_runs_end_below_two():
    c = decide(lazy_and_catapult(cat_final=0.7), "CAT2")
    assert c.verdict == SUPPORTED and abs(c.parts[0].value - 0.7) < 1e-9
    assert set(c.runs) == {"cat1", "cat2"}  # the lazy runs are not catapult runs


def test_cat2_contradicted_when_they_stay_sharp():
    c = decide(lazy_and_catapult(cat_final=2.5), "CAT2")
    assert c.verdict == CONTRADICTED


def test_cat2_inconclusive_when_the_end_straddles_two():
    t = table(run("cat1", 3.0, 10.0, 1.8, seed=1), run("cat2", 3.0, 10.0, 2.2, seed=2))
    c = decide(t, "CAT2")
    assert c.verdict == INCONCLUSIVE


# ---------------------------------------------------------------- CAT3


def test_cat3_supported_when_far_runs_end_diverged():
    t = table(lazy_and_catapult(), run("far1", 30.0, status="diverged", n=12, seed=1),
              run("far2", 30.0, status="diverged", n=9, seed=2))
    c = decide(t, "CAT3")
    assert c.verdict == SUPPORTED and c.parts[0].value == 1.0 and set(c.runs) == {"far1", "far2"}
    assert not any("left out" in n for n in c.notes)
    # the other claims leave the diverged runs out and say so
    assert any("left out diverged runs: far1, far2" in n for n in decide(t, "CAT1").notes)


def test_cat3_contradicted_when_far_runs_complete():
    c = decide(table(run("far1", 30.0, seed=1), run("far2", 30.0, seed=2)), "CAT3")
    assert c.verdict == CONTRADICTED and c.parts[0].value == 0.0


def test_cat3_inconclusive_when_one_of_two_seeds_diverges():
    t = table(run("far1", 30.0, status="diverged", n=12, seed=1), run("far2", 30.0, seed=2))
    c = decide(t, "CAT3")
    assert c.verdict == INCONCLUSIVE and c.parts[0].value == 0.5


def test_cat3_missing_without_a_far_run_and_runs_between_regimes_are_not_judged():
    t = table(lazy_and_catapult(), run("mid", 6.0, 10.0, 1.0))
    c3 = decide(t, "CAT3")
    assert c3.verdict == MISSING and ">= 12" in c3.needs
    assert "mid" not in decide(t, "CAT1").runs and "mid" not in decide(t, "CAT2").runs
