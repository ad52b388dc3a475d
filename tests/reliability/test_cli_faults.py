"""Every CLI path ends in a line, not a traceback: a closed stdout (`| head -1`), Ctrl-C
while the interpreter shuts down, a damaged or mistyped meta.json, metric rows edited by
hand, and a run whose config holds an invalid value."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from sgdwalk.config import load_config
from sgdwalk.experiment import train

from .conftest import cli, one_line_error, run_cli

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

OVERRIDES = ["data.probe_size=32", "data.probe_batch=32", "model.widths=[16]",
             "optim.batch_size=64", "train.epochs=1", "train.progress=false"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return train(load_config("default", OVERRIDES), tmp_path_factory.mktemp("ref")).run_dir


@pytest.fixture
def run(finished, tmp_path):
    """A fresh copy of a finished run, to damage."""
    return shutil.copytree(finished, tmp_path / finished.name)


@pytest.mark.parametrize("args", [["presets"], ["config", "show", "default"], ["claims", "RUN"],
                                  ["export", "RUN", "--out", "-"]])
def test_a_closed_stdout_exits_141_without_a_word(run, args):
    """`sgdwalk ... | head -1` where head has gone: the reader end of stdout is closed
    before the command writes anything."""
    args = [str(run) if a == "RUN" else a for a in args]
    if args[0] == "export":
        args[-1] = str(run / "out.csv")  # export prints one line, after writing its file
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(cli(*args), stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=300)
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


# `sgdwalk presets` run as the program, with an atexit handler registered first (so it runs
# last, after torch's and tqdm's): it says when the interpreter is shutting down and waits.
SHUTDOWN = r"""
import atexit, sys, time
atexit.register(lambda: (print("shutting down", file=sys.stderr, flush=True), time.sleep(20)))
from sgdwalk.cli import main
sys.argv = ["sgdwalk", "presets"]
sys.exit(main())
"""


def test_ctrl_c_while_the_interpreter_shuts_down_exits_130_silently():
    proc = subprocess.Popen([sys.executable, "-c", SHUTDOWN], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline() == "shutting down\n"
        time.sleep(0.2)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert code == 130 and rest == "", rest
    assert time.monotonic() - start < 10  # at once, not after the handler's 20 s


META_FAULTS = {
    "damaged JSON": ('{"status": "completed", ', "meta.json: expected a JSON object, got "
                     "invalid JSON"),
    "a list": ("[1, 2]", "meta.json: expected a JSON object, got list"),
    "status of the wrong type": ({"status": 5}, "meta.json: status: expected a string or "
                                 "null, got int 5"),
    "total_steps as text": ({"total_steps": "19"}, "meta.json: total_steps: expected an "
                            "integer or null, got str \"19\""),
    "final as a list": ({"final": [1]}, "meta.json: final: expected an object or null, got "
                        "list [1]"),
    "run_id as a number": ({"run_id": 12}, "meta.json: run_id: expected a string or null, "
                           "got int 12"),
    "a NaN constant": ({"parameters": "NaN-constant"}, "meta.json: expected a JSON object, "
                       "got invalid JSON (the non-JSON constant NaN)"),
}


@pytest.mark.parametrize("case", list(META_FAULTS))
@pytest.mark.parametrize("command", ["claims", "report", "resume"])
def test_a_damaged_or_mistyped_meta_json_is_one_line_naming_the_run(run, case, command):
    fault, fragment = META_FAULTS[case]
    meta_file = run / "meta.json"
    if isinstance(fault, dict):
        meta = {**json.loads(meta_file.read_text()), **fault}
        text = json.dumps(meta).replace('"NaN-constant"', "NaN")
    else:
        text = fault
    meta_file.write_text(text)
    one_line_error(run_cli(command, run), f"run {run}: {fragment}")


ROW_FAULTS = {
    "TEXT in a REAL column": ("UPDATE scalars SET value = 'abc' WHERE step = 3 AND name = "
                              "'loss'", "scalars row (step 3, name 'loss'): expected an integer "
                              "step, a text name and a REAL value or NULL, got a value of type "
                              "TEXT 'abc'"),
    "a length longer than its blob": (
        "UPDATE vectors SET length = length + 5 WHERE step = 4 AND name = 'dist_init_layers'",
        "vectors row (step 4, name 'dist_init_layers'): expected an integer step, a dtype of "
        "float32, float64 and a blob of exactly length values, got length 8 with a blob of "
        "24 bytes"),
    "an unknown dtype": ("UPDATE vectors SET dtype = 'complex256' WHERE step = 4 AND name = "
                         "'dist_init_layers'", "vectors row (step 4, name 'dist_init_layers'): "
                         "expected an integer step, a dtype of float32, float64 and a blob of "
                         "exactly length values, got dtype 'complex256'"),
}


@pytest.mark.parametrize("case", list(ROW_FAULTS))
@pytest.mark.parametrize("command", ["claims", "report", "export"])
def test_edited_metric_rows_are_one_line_naming_the_row(run, case, command):
    sql, fragment = ROW_FAULTS[case]
    con = sqlite3.connect(run / "metrics.sqlite")
    with con:
        assert con.execute(sql).rowcount == 1
    con.close()
    proc = run_cli(command, run)
    if command == "export" and "vectors" in fragment:
        assert proc.returncode == 0, proc.stderr  # export writes the scalars only
        return
    one_line_error(proc, f"{run}/metrics.sqlite: {fragment}")


@pytest.mark.parametrize("command", ["claims", "report"])
def test_a_run_whose_config_holds_a_bad_value_is_one_line_naming_the_run(run, command):
    config_file = run / "config.toml"
    config_file.write_text(config_file.read_text().replace("lr = 0.1\n", "lr = -1.0\n"))
    one_line_error(run_cli(command, run), f"run {run}: config.toml: optim.lr: expected a "
                   "finite number > 0, got -1.0")


def test_a_run_whose_config_is_nested_thousands_deep_is_one_line_naming_the_run(run):
    (run / "config.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    one_line_error(run_cli("claims", run), f"run {run}: config.toml: expected TOML nested at "
                   "most 32 deep")
