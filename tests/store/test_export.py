"""A run's scalar table exported to Parquet or CSV, from Python and from `sgdwalk export`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sgdwalk.cli import main
from sgdwalk.errors import StoreError
from sgdwalk.store import export_run, read_run


def _fill(store, lr_scale: float, steps: int = 5) -> None:
    for step in range(steps):
        store.log(step, {"loss": lr_scale / (step + 1), "height": math.nan if step == 2 else 0.1})
    store.close()


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


def test_export_command_writes_next_to_the_run_or_where_asked(make_run, tmp_path, capsys):
    store = make_run()
    _fill(store, 1.0)
    assert main(["export", str(store.path)]) == 0
    assert capsys.readouterr().out == f"exported to: {store.path / 'scalars.csv'}\n"
    back = pd.read_csv(store.path / "scalars.csv").set_index("step")
    pd.testing.assert_frame_equal(back, read_run(store.path), check_exact=True)
    assert main(["export", str(store.path), "--out", str(tmp_path / "t.parquet")]) == 0
    assert pd.read_parquet(tmp_path / "t.parquet")["loss"].tolist() == [1 / (s + 1)
                                                                       for s in range(5)]
    assert main(["export", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a run folder with config.toml" in err[0]
