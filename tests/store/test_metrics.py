"""Logging and reading metric rows: keys, conversion rules, vectors, the long/wide tables."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sgdwalk.errors import StoreError
from sgdwalk.store import RunStore


def test_rows_are_keyed_by_step_and_name(make_run):
    store = make_run()
    for _ in range(2):  # the same rows twice, in two commits
        for step in range(10):
            store.log(step, {"loss": step / 10, "acc": 1 - step / 10})
        store.flush()
    con = sqlite3.connect(store.path / "metrics.sqlite")
    assert con.execute("SELECT COUNT(*) FROM scalars").fetchone() == (20,)
    con.close()
    table = store.scalars()
    assert list(table.index) == list(range(10))
    assert table["loss"].tolist() == [s / 10 for s in range(10)]


def test_relogging_after_resume_replaces_the_rows(make_run):
    store = make_run()
    for step in range(6):
        store.log(step, {"loss": 1.0, "line": np.ones(3, np.float32)})
    store.close()
    with RunStore.open(store.path, write=True) as resumed:  # resume from step 3
        for step in range(3, 8):
            resumed.log(step, {"loss": 2.0, "line": np.full(3, 2, np.float32)})
    with RunStore.open(store.path) as reader:
        assert reader.scalars()["loss"].tolist() == [1.0] * 3 + [2.0] * 5
        assert reader.vectors("line")["v0"].tolist() == [1.0] * 3 + [2.0] * 5


def test_scalar_conversion_rules(make_run):
    store = make_run()
    store.log(
        0,
        {
            "t": True,
            "f": np.bool_(False),
            "i": 7,
            "np_i": np.int64(2**40),
            "np_f32": np.float32(0.1),
            "torch_f64": torch.tensor(0.25, dtype=torch.float64),
            "torch_i": torch.tensor(3),
            "zero_d": np.array(1.5),
            "none": None,
            "nan": math.nan,
            "torch_nan": torch.tensor(float("nan")),
            "pinf": math.inf,
            "ninf": -np.inf,
        },
    )
    store.flush()
    row = store.scalars().loc[0]
    assert row["t"] == 1.0 and row["f"] == 0.0 and row["i"] == 7.0
    assert row["np_i"] == 2.0**40
    assert row["np_f32"] == float(np.float32(0.1))  # the float32 value, widened exactly
    assert row["torch_f64"] == 0.25 and row["torch_i"] == 3.0 and row["zero_d"] == 1.5
    assert row["pinf"] == math.inf and row["ninf"] == -math.inf
    for name in ("none", "nan", "torch_nan"):
        assert math.isnan(row[name])
    con = sqlite3.connect(store.path / "metrics.sqlite")
    nulls = {r[0] for r in con.execute("SELECT name FROM scalars WHERE value IS NULL")}
    con.close()
    assert nulls == {"none", "nan", "torch_nan"}  # missing is NULL in SQL, not NaN


def test_logged_tensor_changed_later_keeps_the_logged_value(make_run):
    store = make_run()
    acc, vec = torch.tensor(1.0), torch.zeros(2)
    store.log(0, {"acc": acc, "vec": vec})
    acc += 5
    vec += 5
    store.flush()
    assert store.scalars().loc[0, "acc"] == 1.0
    assert store.vectors("vec").loc[0].tolist() == [0.0, 0.0]


@settings(max_examples=25, deadline=None)
@given(
    arrays(
        st.sampled_from([np.float32, np.float64]),
        st.integers(0, 20),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
    )
)
def test_vectors_round_trip_bit_for_bit(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("vec") / "run"
    with RunStore.create(path, "", {}) as store:
        store.log(0, {"v": values})
        store.log(1, {"v": torch.from_numpy(values.copy())})
    table = RunStore.open(path).vectors("v")
    assert table.shape == (2, len(values))
    assert table.dtypes.unique().tolist() in ([], [np.dtype(values.dtype)])
    for step in (0, 1):
        got = table.loc[step].to_numpy()
        assert got.tobytes() == values.tobytes()  # same bits, NaN payloads included


def test_vector_dtypes_and_ragged_lengths(make_run):
    store = make_run()
    store.log(0, {"v": torch.tensor([1.5, 2.5], dtype=torch.bfloat16)})
    store.log(1, {"v": np.array([1, 2, 3], dtype=np.int64)})
    store.log(2, {"v": [0.5]})
    store.flush()
    con = sqlite3.connect(store.path / "metrics.sqlite")
    stored = con.execute("SELECT step, dtype, length FROM vectors ORDER BY step").fetchall()
    con.close()
    assert stored == [(0, "float32", 2), (1, "float64", 3), (2, "float64", 1)]
    table = store.vectors("v")
    assert list(table.columns) == ["v0", "v1", "v2"] and table.dtypes.eq(np.float64).all()
    np.testing.assert_array_equal(
        table.to_numpy(), [[1.5, 2.5, np.nan], [1, 2, 3], [0.5, np.nan, np.nan]]
    )


def test_wide_and_long_tables(make_run):
    store = make_run()
    store.log(0, {"a": 1.0, "b": 2.0})
    store.log(1, {"a": 3.0})
    store.flush()
    wide = store.scalars()
    assert wide.index.name == "step" and wide.index.dtype == np.int64
    assert list(wide.columns) == ["a", "b"] and math.isnan(wide.loc[1, "b"])
    long = store.scalars(wide=False)
    assert list(long.columns) == ["step", "name", "value"]
    assert long.values.tolist() == [[0, "a", 1.0], [0, "b", 2.0], [1, "a", 3.0]]
    picked = store.scalars(["b", "never_logged"])
    assert list(picked.columns) == ["b", "never_logged"] and picked["never_logged"].isna().all()
    assert store.names() == {"scalars": ["a", "b"], "vectors": []}


def test_empty_store_reads_as_empty_tables(make_run):
    store = make_run()
    table = store.scalars()
    assert table.shape == (0, 0) and table.index.name == "step"
    assert store.vectors("nothing").shape == (0, 0)
    assert store.names() == {"scalars": [], "vectors": []}


def test_unflushed_rows_are_not_visible_and_close_flushes(make_run):
    store = make_run()
    store.log(0, {"a": 1.0})
    assert store.scalars().empty
    store.close()
    assert RunStore.open(store.path).scalars()["a"].tolist() == [1.0]


@pytest.mark.parametrize(
    "step, values, message",
    [
        (-2, {"a": 1.0}, "expected an integer step >= -1, got -2"),
        (1.5, {"a": 1.0}, "expected an integer step >= -1, got float 1.5"),
        (True, {"a": 1.0}, "expected an integer step >= -1, got bool True"),
        (0, [1.0], "expected a dict of metric values, got list"),
        (0, {"a": "x"}, "expected a number, bool, None or 1-D array, got str 'x'"),
        (0, {"a": np.ones((2, 2))}, "expected a scalar or a 1-D array, got shape (2, 2)"),
        (0, {"a": torch.ones(2, 2)}, "expected a scalar or a 1-D tensor, got shape (2, 2)"),
        (0, {"a": np.array(["x"])}, "expected a vector of real numbers, got dtype <U1"),
        (0, {"step": 1.0}, "expected a metric name other than"),
        (0, {"": 1.0}, "expected a non-empty metric name (str), got str ''"),
        (0, {3: 1.0}, "expected a non-empty metric name (str), got int 3"),
    ],
)
def test_bad_values_are_refused_at_log_time(make_run, step, values, message):
    store = make_run()
    good = {"good": 1.0, "vec": np.ones(2)}
    with pytest.raises(StoreError, match="^run .*: .*") as info:
        store.log(step, good | values if isinstance(values, dict) else values)
    assert message in str(info.value)
    store.flush()
    assert store.scalars().empty  # nothing of the refused call was buffered
    store.log(0, {"good": np.ones(2), "vec": 1.0})  # nor were the kinds of its names kept
    store.flush()
    assert store.names() == {"scalars": ["vec"], "vectors": ["good"]}


def test_a_name_keeps_its_kind_across_resumes(make_run):
    store = make_run()
    store.log(0, {"a": 1.0, "v": np.ones(2)})
    store.close()
    with RunStore.open(store.path, write=True) as again:
        with pytest.raises(
            StoreError, match="metric 'a': expected a scalar as before, got a vector"
        ):
            again.log(1, {"a": np.ones(2)})
        with pytest.raises(
            StoreError, match="metric 'v': expected a vector as before, got a scalar"
        ):
            again.log(1, {"v": 1.0})


def test_numpy_and_tensor_steps(make_run):
    store = make_run()
    store.log(np.int64(3), {"a": 1.0})
    store.log(torch.tensor(4), {"a": 2.0})
    store.flush()
    assert store.scalars().index.tolist() == [3, 4]


def test_reader_cannot_write_and_closed_store_refuses(make_run):
    store = make_run()
    store.log(0, {"a": 1.0})
    store.close()
    reader = RunStore.open(store.path)
    for call in (lambda: reader.log(1, {"a": 1.0}), reader.flush, lambda: reader.update_meta(x=1)):
        with pytest.raises(StoreError, match="expected a store opened with write=True"):
            call()
    reader.close()
    with pytest.raises(StoreError, match="expected an open store to read, got a closed one"):
        reader.scalars()


def test_scalars_frame_matches_pandas_pivot(make_run):
    store = make_run()
    rng = np.random.default_rng(0)
    values = rng.standard_normal((50, 4))
    for step in range(50):
        store.log(step, {f"m{j}": values[step, j] for j in range(4)})
    store.flush()
    expected = pd.DataFrame(values, columns=[f"m{j}" for j in range(4)])
    expected.index = pd.Index(range(50), dtype="int64", name="step")
    pd.testing.assert_frame_equal(store.scalars(), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_values_and_checkpoints(make_run):
    store = make_run()
    dev = torch.device("cuda")
    store.log(
        0,
        {
            "a": torch.tensor(0.5, device=dev),
            "b": torch.tensor(2, device=dev),
            "c": torch.tensor(0.25, device=dev, dtype=torch.float64),
            "d": torch.tensor(1.5),
            "v": torch.arange(3, device=dev, dtype=torch.float32),
        },
    )
    store.flush()
    assert store.scalars().loc[0].to_dict() == {"a": 0.5, "b": 2.0, "c": 0.25, "d": 1.5}
    assert store.vectors("v").loc[0].tolist() == [0.0, 1.0, 2.0]
    store.save_checkpoint(0, {"w": torch.ones(2, device=dev)})
    _, state = store.latest_checkpoint()
    assert state["w"].device.type == "cpu" and torch.equal(state["w"], torch.ones(2))
