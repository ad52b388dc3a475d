"""Tables of runs: read_run, read_runs with config columns, export, find_runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sgdwalk.errors import StoreError
from sgdwalk.store import RunStore, export_run, find_runs, read_run, read_runs


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


def test_read_runs_joins_config_and_status(make_run):
    a = make_run("a", meta={"status": "finished"}, **{"optim.lr": 0.05, "optim.batch_size": 32})
    b = make_run("b", meta={"status": "diverged", "run_id": "b-1234"}, **{"optim.lr": 0.5})
    _fill(a, 1.0, steps=3)
    _fill(b, 2.0, steps=4)
    table = read_runs([a.path, b.path])
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


def test_read_runs_long(make_run):
    a = make_run("a", **{"optim.lr": 0.05})
    _fill(a, 1.0, steps=2)
    table = read_runs([a.path], names=["loss"], wide=False)
    assert table[["step", "name", "value"]].values.tolist() == [[0, "loss", 1.0], [1, "loss", 0.5]]
    assert table["optim.lr"].tolist() == [0.05, 0.05]


def test_read_runs_of_nothing(tmp_path):
    assert read_runs([]).empty


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_round_trips(make_run, tmp_path, fmt):
    store = make_run()
    rng = np.random.default_rng(1)
    for step in range(20):
        store.log(step, {"a": rng.standard_normal(), "b": None if step % 3 else math.inf})
    store.close()
    out = export_run(store.path, tmp_path / "out" / f"table.{fmt}")
    assert out == tmp_path / "out" / f"table.{fmt}"
    if fmt == "parquet":
        back = pd.read_parquet(out)
    else:
        back = pd.read_csv(out)
    assert list(back.columns) == ["step", "a", "b"]
    pd.testing.assert_frame_equal(back.set_index("step"), read_run(store.path), check_exact=True)
    assert [p.name for p in out.parent.iterdir()] == [f"table.{fmt}"]  # no temporary left


def test_export_format_from_argument_and_errors(make_run, tmp_path):
    store = make_run()
    _fill(store, 1.0)
    out = export_run(store.path, tmp_path / "table.txt", "csv")
    assert out.read_text().splitlines()[0] == "step,height,loss"
    with pytest.raises(StoreError, match="expected fmt 'parquet' or 'csv', got 'txt'"):
        export_run(store.path, tmp_path / "table.txt")


def test_find_runs(make_run, tmp_path):
    for name in ("study/lr0.1/seed1", "study/lr0.1/seed2", "other"):
        make_run(name).close()
    (tmp_path / "study" / "notes").mkdir()
    (tmp_path / "study" / "notes" / "config.toml").write_text("")  # no metric store: not a run
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
    assert read_runs([a.path])["config.name"].tolist() == ["baseline"]
    assert "name" in read_runs([a.path], wide=False).columns  # the metric name column
