"""Reading stored runs: read_run (one run as stored), find_runs, and load (the one reader:
runs, steps and vectors in memory, copies read once, unfinished runs and half-made
folders left out with a note)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdwalk.errors import StoreError
from sgdwalk.store import RunStore, find_runs, load, read_run
from sgdwalk.store.disk import TMP_MARK

from .conftest import config_text


def _fill(store, lr_scale: float, steps: int = 5) -> None:
    for step in range(steps):
        store.log(step, {"loss": lr_scale / (step + 1), "height": math.nan if step == 2 else 0.1})
    store.close()


def test_read_run_is_the_wide_scalar_table(make_run):
    store = make_run()
    _fill(store, 1.0)
    table = read_run(store.path)
    assert table.index.name == "step" and list(table.columns) == ["height", "loss"]
    assert table["loss"].tolist() == [1 / (s + 1) for s in range(5)]
    assert math.isnan(table.loc[2, "height"])


def test_load_joins_config_and_status(make_run, tmp_path):
    a = make_run("a", meta={"status": "finished"}, **{"optim.lr": 0.05, "optim.batch_size": 32})
    b = make_run("b", meta={"status": "diverged", "run_id": "b-1234"}, **{"optim.lr": 0.5})
    _fill(a, 1.0, steps=3)
    _fill(b, 2.0, steps=4)
    table = load(tmp_path).table()
    assert len(table) == 7
    assert list(table.columns[:3]) == ["run_id", "run_dir", "status"]
    assert table.columns.get_loc("step") > table.columns.get_loc("optim.lr")
    assert table["run_id"].tolist() == ["a"] * 3 + ["b-1234"] * 4
    assert table["status"].tolist() == ["finished"] * 3 + ["diverged"] * 4
    assert table["optim.lr"].tolist() == [0.05] * 3 + [0.5] * 4
    assert table["optim.batch_size"].tolist() == [32] * 3 + [100] * 4
    assert table["model.widths"].tolist() == [(128, 64)] * 7  # lists become tuples
    assert table["step"].tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert table["loss"].tolist() == [1.0, 0.5, 1 / 3, 2.0, 1.0, 2 / 3, 0.5]
    per_lr = table.groupby("optim.lr")["loss"].max()
    assert per_lr.to_dict() == {0.05: 1.0, 0.5: 2.0}


def test_load_long(make_run):
    a = make_run("a", **{"optim.lr": 0.05})
    _fill(a, 1.0, steps=2)
    table = load(a.path).table(long=True)
    loss = table[table["name"] == "loss"]
    assert loss[["step", "name", "value"]].values.tolist() == [[0, "loss", 1.0], [1, "loss", 0.5]]
    assert loss["optim.lr"].tolist() == [0.05, 0.05]


def test_load_of_nothing(tmp_path):
    with pytest.raises(StoreError, match="expected a run folder or a folder of runs, got none"):
        load(tmp_path)


def test_find_runs(make_run, tmp_path):
    for name in ("study/lr0.1/seed1", "study/lr0.1/seed2", "other"):
        make_run(name).close()
    (tmp_path / "study" / "notes").mkdir()
    (tmp_path / "study" / "notes" / "config.toml").write_text("")  # no metric store: not a run
    being_made = tmp_path / "study" / f".seed3{TMP_MARK}123.ab"  # renamed into place later
    being_made.mkdir()
    for name in ("config.toml", "metrics.sqlite"):
        (being_made / name).write_text("")
    found = find_runs(tmp_path)
    assert found == [
        tmp_path / "other",
        tmp_path / "study/lr0.1/seed1",
        tmp_path / "study/lr0.1/seed2",
    ]
    assert find_runs(tmp_path / "other") == [tmp_path / "other"]
    assert all(isinstance(RunStore.open(p), RunStore) for p in found)
    with pytest.raises(StoreError, match="expected an existing folder, got"):
        find_runs(tmp_path / "missing")


def test_top_level_config_keys_are_prefixed(make_run):
    a = make_run("a", **{"name": "baseline"})
    _fill(a, 1.0, steps=1)
    assert load(a.path).table()["config.name"].tolist() == ["baseline"]
    assert "name" in load(a.path).table(long=True).columns  # the metric name column


# ---------------------------------------------------------------- what load decides


def _run(folder, run_id, status="completed", steps=4, total=None, **meta):
    """A run folder written through the store, with meta run_id/status and `steps` rows."""
    store = RunStore.create(folder, config_text(), {"run_id": run_id, "status": status,
                                                    "total_steps": total or steps, **meta})
    for step in range(steps):
        store.log(step, {"loss": 1.0 / (step + 1), "curve": np.arange(3.0) + step})
    store.close()
    return folder


def test_load_opens_each_store_once_read_only_and_holds_everything(tmp_path, monkeypatch):
    for i in range(3):
        _run(tmp_path / "sweep" / f"r{i}", f"id{i}", steps_per_epoch=2)
    opened = []
    real_open = RunStore.open.__func__
    monkeypatch.setattr(RunStore, "open", classmethod(
        lambda cls, path, write=False: (opened.append((path.name, write)),
                                        real_open(cls, path, write))[1]))
    results = load(tmp_path)
    assert sorted(opened) == [("r0", False), ("r1", False), ("r2", False)]
    monkeypatch.setattr(RunStore, "open", None)  # nothing below may read a file
    assert list(results.runs.index) == ["id0", "id1", "id2"]
    assert results.runs["last_step"].tolist() == [3, 3, 3]
    assert results.runs["epochs_done"].tolist() == [2.0, 2.0, 2.0]
    assert list(results.steps.columns) == ["run_id", "step", "steps_per_epoch", "epochs_done",
                                           "loss"]
    assert results.steps["epochs_done"].tolist()[:4] == [0.5, 1.0, 1.5, 2.0]
    curve = results.vectors("curve", "id1")
    assert curve[["step", "v0", "v2"]].values.tolist() == [[s, s, s + 2] for s in range(4)]
    assert results.meta("id2")["status"] == "completed"
    assert "lr = 0.1" in results.config_text("id0") and results.notes == ()


def test_a_run_copied_into_a_sweep_is_read_once_with_a_note(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep / "a-1", "a1")
    _run(sweep / "b-2", "b2", steps=6)
    clean = load(sweep)
    shutil.copytree(sweep / "b-2", sweep / "b-2 copy")
    shutil.copytree(sweep / "a-1", tmp_path / "elsewhere" / "a-1")
    results = load(tmp_path)
    assert list(results.runs.index) == ["a1", "b2"]
    pd.testing.assert_frame_equal(results.steps, clean.steps)  # no step counted twice
    assert results.notes == ("run a1 found 2 times: read elsewhere/a-1, left out sweep/a-1",
                             "run b2 found 2 times: read sweep/b-2, left out sweep/b-2 copy")


def test_the_copy_that_got_furthest_is_the_one_read(tmp_path):
    _run(tmp_path / "x" / "run", "same", status="running", steps=2, total=6)
    _run(tmp_path / "y" / "run", "same", status="completed", steps=6)
    results = load(tmp_path)
    assert results.runs.loc["same", "run_dir"] == str(tmp_path / "y" / "run")
    assert results.runs.loc["same", "last_step"] == 5


def test_unfinished_runs_are_left_out_of_a_sweep_but_read_as_the_run_itself(tmp_path):
    _run(tmp_path / "done", "done")
    _run(tmp_path / "stopped", "stopped-run", status="stopped", steps=3, total=12)
    _run(tmp_path / "running", "running-run", status="running", steps=30, total=120)
    results = load(tmp_path)
    assert list(results.runs.index) == ["done"]
    assert set(results.steps["run_id"]) == {"done"}
    assert results.notes == ("left out unfinished runs: running-run (running, 30 of 120 steps), "
                             "stopped-run (stopped, 3 of 12 steps)",)
    alone = load(tmp_path / "running")
    assert list(alone.runs.index) == ["running-run"] and len(alone.steps) == 30
    assert alone.notes == ("unfinished, read as far as they got: running-run (running, 30 of "
                           "120 steps)",)
    watched = load(tmp_path, include_unfinished=True)  # the live view of a sweep
    assert list(watched.runs.index) == ["done", "running-run", "stopped-run"]
    assert watched.notes == ("unfinished, read as far as they got: running-run (running, 30 of "
                             "120 steps), stopped-run (stopped, 3 of 12 steps)",)
    shutil.rmtree(tmp_path / "done")
    with pytest.raises(StoreError, match="expected a finished run, got only unfinished ones: "
                                         "running-run"):
        load(tmp_path)


def test_half_made_folders_are_skipped_with_a_note(tmp_path):
    """What a kill left before runs were made whole: config, meta, an empty store."""
    _run(tmp_path / "whole", "whole")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.toml").write_text(config_text())
    (half / "meta.json").write_text('{"status": "created"}')
    (half / "metrics.sqlite").write_bytes(b"")
    results = load(tmp_path)
    assert list(results.runs.index) == ["whole"]
    assert results.notes == ("skipped folders that are not whole runs: half (its metric "
                             "store has no tables)",)
    with pytest.raises(StoreError, match="got none .skipped folders that are not whole runs"):
        load(half)


def test_a_run_the_sweep_recorded_as_failed_has_status_failed(tmp_path):
    from sgdwalk.store import write_manifest

    _run(tmp_path / "s" / "broken", "broken", status="running", steps=2)
    _run(tmp_path / "s" / "fine", "fine")
    write_manifest(tmp_path / "s", {"study": "s", "claims": ["C1"], "runs": [
        {"dir": "broken", "status": "failed"}, {"dir": "fine", "status": "completed"}]})
    results = load(tmp_path)
    assert results.runs["status"].to_dict() == {"broken": "failed", "fine": "completed"}
    assert dict(results.study_claims) == {"s": ("C1",)}


def test_runs_without_a_recorded_id_are_named_by_folder(tmp_path):
    """One's own loop writes meta without run_id: the folder name, or its path under the
    root where two such folders share a name (two different runs, not copies)."""
    for folder in ("a/run", "b/run", "c/solo"):
        _run(tmp_path / folder, None)
    assert list(load(tmp_path).runs.index) == ["a/run", "b/run", "solo"]


def test_manifest_claims_come_from_each_study_folder(tmp_path):
    """(moved from tests/analysis/test_scope.py with the code it tests)"""
    from sgdwalk.store import write_manifest

    for study, ids in (("trajectory", ["C1", "C2"]), ("noise", ["C9"])):
        write_manifest(tmp_path / study, {"study": study, "claims": ids, "runs": []})
    (tmp_path / "loose").mkdir()
    for i, folder in enumerate(("trajectory/run-a", "noise/run-b", "loose/run-c")):
        _run(tmp_path / folder, f"r{i}")
    claims = load(tmp_path).study_claims
    assert claims == {"trajectory": ("C1", "C2"), "noise": ("C9",)}


def test_the_readme_read_back_example_runs(tmp_path, monkeypatch):
    import re

    from sgdwalk.analysis.synthetic import sweep_tables, write_runs

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
                if "load(" in b]
    t = sweep_tables(epochs=2, lrs=(0.1, 0.2), batch_sizes=(32,), seeds=1)
    first = write_runs(t, tmp_path / "runs")[0]
    first.rename(first.with_name("default-1a2b3c4d5e6f"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(block, namespace)
    assert len(namespace["results"].runs) == len(t.runs) and namespace["results"].notes == ()
    assert namespace["table"].index.min() == -1
    assert sorted(namespace["by_lr"].index) == [0.1, 0.2, 3.2]
    assert set(namespace["curves"]["run_id"]) == set(t.vectors("line_probe")["run_id"])
