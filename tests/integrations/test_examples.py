"""Every example under examples/ runs as a user would run it, and does what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# example -> (arguments, the steps it must report, the package it needs)
CASES = {
    "attach_loop.py": (["--steps", "12"], 12, None),
    "lightning_callback.py": (["--epochs", "1"], 8, "lightning"),
    "hf_trainer.py": (["--epochs", "1"], 16, "transformers"),
    "tensorboard_sink.py": (["--out", "tb", "--steps", "10"], 10, "tensorboard"),
    "wandb_offline.py": (["--dir", "wb", "--steps", "10"], 10, "wandb"),
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_and_reports_its_steps(name, tmp_path):
    args, steps, needs = CASES[name]
    if needs:
        pytest.importorskip(needs)
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(rf"^steps: {steps}$", done.stdout, re.M), done.stdout
    if name == "tensorboard_sink.py":
        assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    if name == "wandb_offline.py":
        assert list((tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb"))
