"""summarize_runs: one documented row per run."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdwalk.analysis import summarize_runs
from sgdwalk.analysis.synthetic import run_frame, sweep_tables


def test_one_row_per_run_with_finals_heights_distances_and_status():
    t = sweep_tables(epochs=3)
    s = summarize_runs(t)
    assert list(s.index) == list(t.runs.index)
    run = "sgd-lr0.1-b32-s0"
    rows = t.steps[t.steps["run_id"] == run]
    assert s.loc[run, "final_test_acc"] == rows["test_acc"].dropna().iloc[-1]
    assert s.loc[run, "final_train_loss"] == rows["train_loss"].dropna().iloc[-1]
    h = rows.loc[rows["step"] >= 0, "line_probe_height"]
    assert s.loc[run, "height_median"] == pytest.approx(h.median())
    first_epoch = rows[(rows["step"] >= 0) & (rows["step"] < 16)]["line_probe_height"]
    assert s.loc[run, "height_median_e1"] == pytest.approx(first_epoch.median())
    assert s.loc[run, "steps"] == 48 and s.loc[run, "epochs_done"] == 3
    # matched points: the last epoch / step every non-diverged run reached
    assert s["matched_epoch"].iloc[0] == 3
    assert s.loc[run, "dist_init_at_epoch"] == rows.loc[rows["step"] == 47, "dist_init"].item()
    m = int(s["matched_step"].iloc[0])
    assert m == 11  # the B=128 runs stop at step 11 (3 epochs of 4)
    assert s.loc[run, "dist_init_at_step"] == rows.loc[rows["step"] == m, "dist_init"].item()
    assert 0 < s.loc[run, "barrier_floor_share"] and s.loc[run, "barrier_iter_share"] < 0.2
    assert s.loc[run, "sharp_lambda_max_final"] > 0 and s.loc[run, "align_topk_median"] > 0
    div = s.loc["sgd-lr3.2-b32"]
    assert div["diverged"] and div["status"] == "diverged" and div["diverged_step"] == 20
    assert not s.loc[run, "diverged"] and math.isnan(s.loc[run, "diverged_step"])


def test_missing_inputs_give_nan_not_errors():
    table = run_frame("bare", {"loss": np.ones(10)}, steps_per_epoch=5)
    s = summarize_runs(table)
    row = s.loc["bare"]
    for col in ("final_test_acc", "height_median", "dist_init_final", "sharp_lambda_max_final",
                "barrier_floor_share", "crossing_share"):
        assert col not in s.columns or pd.isna(row[col]), col
    assert row["status"] == "completed" and row["steps"] == 10


# The summaries of a synthetic sweep (whole, and without the floor change and cosines),
# recorded before the claims' share statistics were merged with the summaries' ones: the
# merge must reproduce them exactly. Rewrite: `PYTHONPATH=src python
# tests/analysis/test_summary.py`.
REFERENCE = Path(__file__).with_name("summary_reference.json")
SUMMARY_CASES = {
    "sweep": lambda: sweep_tables(epochs=3),
    "sweep-partial": lambda: sweep_tables(seed=2, epochs=2, seeds=1).steps.drop(
        columns=["floor_change", "cos_update", "line_probe_crossing", "barrier_iter_k5"]),
}


def summary_json(case: str) -> dict:
    s = summarize_runs(SUMMARY_CASES[case]())
    return json.loads(json.dumps({"columns": list(s.columns), "rows": s.to_dict("index")},
                                 default=lambda x: x.item(), allow_nan=True),
                      parse_constant=lambda _: None)


@pytest.mark.parametrize("case", list(SUMMARY_CASES))
def test_summaries_match_the_recorded_reference(case):
    assert summary_json(case) == json.loads(REFERENCE.read_text())[case]


if __name__ == "__main__":
    REFERENCE.write_text(json.dumps({c: summary_json(c) for c in SUMMARY_CASES}, indent=1)
                         + "\n")
