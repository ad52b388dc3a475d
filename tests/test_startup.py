"""Start-up: what `sgdwalk` imports before it trains. The command line imports nothing heavy
to parse its arguments, and the default run's data (the digits) load without scikit-learn
and SciPy (whose import cost more than torch's). Checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "numpy", "sklearn", "scipy", "matplotlib", "pandas")


def imported_after(code: str) -> list[str]:
    """The HEAVY top-level modules in sys.modules after running `code` in a new process."""
    probe = (f"{code}\nimport sys, json\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_command_line_parses_without_heavy_imports():
    assert imported_after("import sgdwalk.cli\nsgdwalk.cli.build_parser()") == []


def test_the_digits_load_without_scikit_learn_or_scipy():
    got = imported_after("from sgdwalk.config import DataConfig\n"
                         "from sgdwalk.data import load_dataset\n"
                         "assert len(load_dataset(DataConfig(name='digits')).train) == 1257")
    assert "torch" in got  # the check sees what was imported
    assert "sklearn" not in got and "scipy" not in got


def test_a_default_run_trains_and_stores_without_pandas_or_matplotlib(tmp_path):
    got = imported_after("from sgdwalk.cli import main\n"
                         f"main(['train', 'default', '--set', 'train.max_steps=2', "
                         f"'--out', {str(tmp_path)!r}, '--no-progress'])")
    assert "torch" in got  # it trained
    assert "pandas" not in got and "matplotlib" not in got and "sklearn" not in got
