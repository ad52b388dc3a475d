"""The paper scale: every study's paper configs take one real step on fixture-sized files in
the official formats (CIFAR-10 binary batches, MNIST IDX), with the paper's architectures
shrunk in width only; river-valley's GPT on Debian's fortunes, when that package is installed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sgdwalk import load
from sgdwalk.studies import load_study, run_sweep, study_names

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

SMALL = ["train.max_steps=1", "train.device=cpu", "data.probe_size=16", "data.probe_batch=8",
         "optim.batch_size=8", "optim.noise_batch=8", "optim.noise_samples=2",
         "model.width_mult=0.125", "walk.sharpness_max_iter=12"]
FIELD = ("edge-of-stability", "catapult")  # studies of other papers than Xing et al.'s
FORTUNES = Path("/usr/share/games/fortunes")


@pytest.mark.parametrize("name", study_names())
def test_paper_scale_takes_one_step_on_fixture_data(name, paper_data, tmp_path, one_thread):
    dataset = load_study(name, scale="paper").runs[0].data.name
    if dataset == "text" and not FORTUNES.is_dir():
        pytest.skip("Debian's fortunes package is not installed (apt-get install fortunes)")
    subset = ["data.train_size=64"] if name in FIELD else []  # their subsets of the data
    root = [] if dataset == "text" else [f"data.root={paper_data[dataset]}"]
    study = load_study(name, scale="paper", overrides=[*SMALL, *subset, *root])
    firsts = {}
    for entry in study.entries:  # one run per variant
        firsts.setdefault(entry.variant, entry)
    study = dataclasses.replace(study, entries=tuple(firsts.values()))
    result = run_sweep(study, tmp_path, progress=False)
    assert result.ok, result.summary()
    assert all(r.steps == 1 for r in result.records)
    table = load(result.root).table()
    assert set(table["data.name"]) == {dataset} and set(table["scale"]) == {"paper"}
    if dataset == "text":  # river-valley: the gpt-char preset's GPT
        assert set(table["model.name"]) == {"gpt"} and set(table["model.n_embd"]) == {128}
    else:
        assert set(table["model.name"]) <= {"vgg11", "mlp"}
    if name in FIELD:  # other papers' settings: full-batch GD on the squared error, no BN
        assert set(table["optim.algorithm"]) == {"gd"} and set(table["model.batchnorm"]) == {False}
        assert "mse" in set(table["train.loss"])
    elif dataset == "mnist":
        assert set(table["model.widths"]) == {(500, 350)}
    elif dataset != "text":
        assert set(table["model.batchnorm"]) == {True} and set(table["data.augment"]) == {True}
    assert table.groupby("run_id")["loss"].count().eq(1).all()
