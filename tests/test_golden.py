"""Golden values of one end-to-end run, and its exact resumption.

The `default` preset (BN MLP on the embedded digits, SGD lr 0.1, batch 32) for two epochs
with the `line` walk: every step's update, trajectory, economy fit and 13-point line on the
probe set. The pinned numbers were produced by this code on torch 2.13.0 (CPU, one thread);
a change in any of them means the training path, a probe or the store now computes something
else, which must be a decision, not an accident. Then the same run killed at step 50 and
resumed gives the uninterrupted run's table bit for bit, so it pins the same numbers.
"""

import math

import pytest

from sgdwalk.config import load_config
from sgdwalk.experiment import resume, train
from sgdwalk.store import read_run

OVERRIDES = ["train.epochs=2", "walk.preset=line", "train.checkpoint_every=20"]
REL = 1e-5  # float32 training: room for another CPU's vector kernels, not for a change

# (column, step) -> value; step -1 is the last update (78)
GOLDEN = {
    ("loss", 1): 2.3091323375701904,
    ("loss", -1): 0.6370382905006409,
    ("update_norm", 1): 0.21064235645985926,
    ("dist_init", -1): 3.1933855136638787,
    ("path_length", -1): 16.49790331525395,
    ("cos_grad", -1): -0.03778999486922339,
    ("line_probe_height", 1): 0.10568193811923265,
    ("line_probe_height", -1): 0.00784623586321409,
    ("econ_height", -1): 0.3100700779118053,
}
FINAL = {"test_acc": 0.8694444444444445, "test_loss": 0.548172590467665}


def _check(table, final):
    assert len(table) == 79  # theta_0 plus 2 epochs x 39 updates
    for (col, step), want in GOLDEN.items():
        got = float(table[col].iloc[step])
        assert got == pytest.approx(want, rel=REL), (col, step, got)
    for key, want in FINAL.items():
        assert final[key] == pytest.approx(want, rel=REL), (key, final[key])
    # every probed step has a finite line; cos_grad needs a previous step
    assert table["line_probe_height"].iloc[1:].map(math.isfinite).all()
    assert math.isnan(table["cos_grad"].iloc[1])


def test_default_run_pins_golden_values_and_resumes_exactly(tmp_path):
    cfg = load_config("default", OVERRIDES)
    whole = train(cfg, tmp_path / "whole", progress=False)
    assert whole.status == "completed" and whole.steps == 78
    table = read_run(whole.run_dir).sort_index()
    _check(table, whole.final)

    cut = train(cfg, tmp_path / "cut", progress=False, halt_at_step=50)
    assert cut.status == "stopped"
    assert read_run(cut.run_dir).index.max() < 78  # the tail really was lost
    done = resume(cut.run_dir, progress=False)
    assert done.status == "completed"
    resumed = read_run(done.run_dir).sort_index()
    assert resumed.equals(table)  # bit for bit, NaNs in place
    _check(resumed, done.final)
