"""Runs and sweeps read by the store, as analysis sees them: conditions, families, the epoch
axis, vectors and metas, and frames built by hand."""

import numpy as np
import pandas as pd
import pytest

from sgdwalk.analysis.frames import Tables, family_key
from sgdwalk.analysis.synthetic import run_frame, sweep_tables, write_runs
from sgdwalk.config import config_to_toml, load_config
from sgdwalk.errors import StoreError
from sgdwalk.store import RunStore, load


def make_run(path, lr=0.1, batch=32, spe=4, epochs=2, meta_spe=True, seed=1111):
    config = load_config(None, [f"optim.lr={lr}", f"optim.batch_size={batch}",
                                f"train.seed={seed}"])
    meta = {"run_id": path.name, "status": "completed", "sgdwalk": "0.1.0", "torch": "x"}
    if meta_spe:
        meta["steps_per_epoch"] = spe
    store = RunStore.create(path, config_to_toml(config), meta)
    store.log(-1, {"epoch": 0, "test_acc": 0.1})
    store.log(-1, {"line_grid": np.array([0.0, 0.5, 1.0])})
    for t in range(spe * epochs):
        store.log(t, {"dist_init": 0.1 * (t + 1), "line_probe": np.array([1.0, 0.5, 0.8])})
        if (t + 1) % spe == 0:
            store.log(t, {"epoch": (t + 1) // spe, "test_acc": 0.5})
    store.close()
    return path


def test_load_one_run_adds_epochs_done_and_reads_vectors_and_meta(tmp_path):
    run = make_run(tmp_path / "r1")
    t = Tables(load(run))
    assert list(t.runs.index) == ["r1"]
    s = t.steps
    assert s["step"].min() == -1 and s["step"].max() == 7
    assert s.loc[s["step"] == 3, "epochs_done"].item() == pytest.approx(1.0)
    assert s.loc[s["step"] == -1, "epochs_done"].item() == 0
    assert t.runs.loc["r1", "lr"] == 0.1 and t.runs.loc["r1", "batch_size"] == 32
    vec = t.vectors("line_probe")
    assert len(vec) == 8 and list(vec.columns[:2]) == ["run_id", "step"]
    assert t.vectors("line_grid")["v1"].item() == 0.5
    assert t.meta("r1")["torch"] == "x" and "lr = 0.1" in t.config_text("r1")
    assert len(t.vectors("never_logged")) == 0


def test_steps_per_epoch_is_inferred_from_epoch_rows_when_meta_lacks_it(tmp_path):
    t = Tables(load(make_run(tmp_path / "r", spe=5, meta_spe=False)))
    assert t.runs.loc["r", "steps_per_epoch"] == 5


def test_load_a_folder_of_runs_groups_seeds_into_conditions(tmp_path):
    make_run(tmp_path / "a", seed=1)
    make_run(tmp_path / "b", seed=2)
    make_run(tmp_path / "c", lr=0.2)
    make_run(tmp_path / "d", batch=64)
    runs = Tables(load(tmp_path)).runs
    assert runs.loc["a", "condition"] == runs.loc["b", "condition"]
    assert runs["condition"].nunique() == 3
    lr_family = family_key(runs, ("optim.lr",))
    assert lr_family["a"] == lr_family["c"] != lr_family["d"]


def test_load_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(StoreError, match="expected a run folder or a folder of runs"):
        load(tmp_path)


def test_a_synthetic_sweep_written_through_the_store_reads_back_equal(tmp_path):
    mem = sweep_tables(epochs=2, lrs=(0.1,), batch_sizes=(32, 64), seeds=1)
    write_runs(mem, tmp_path)
    disk = Tables(load(tmp_path))
    assert sorted(disk.runs.index) == sorted(mem.runs.index)
    assert disk.runs.loc["sgd-lr3.2-b32", "diverged"]
    a = mem.steps.set_index(["run_id", "step"])["dist_init"]
    b = disk.steps.set_index(["run_id", "step"])["dist_init"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index().reindex(a.sort_index().index),
                                   check_names=False)
    assert len(disk.vectors("line_probe")) == len(mem.vectors("line_probe"))


def test_walk_settings_and_names_do_not_split_a_condition():
    rows = [run_frame(f"r{i}", {"loss": np.ones(4)}, steps_per_epoch=2, seed=i,
                      config={"walk.line": f"every:{i + 1}"}) for i in range(2)]
    runs = Tables.from_frames(pd.concat(rows, ignore_index=True)).runs
    assert runs["condition"].nunique() == 1 and runs.loc["r0", "label"] == "sgd lr=0.1 B=32"
