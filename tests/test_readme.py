"""The README's library example runs as written, on a small model and loader."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_walk_example_runs_with_adam_and_measures_the_applied_update():
    (block,) = [b for b in _python_blocks() if "Walk(" in b]
    torch.manual_seed(0)
    x_all, y_all = torch.randn(96, 10), torch.randint(0, 3, (96,))
    namespace = {
        "model": torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(),
                                     torch.nn.Linear(16, 3)),
        "loader": list(zip(x_all.split(16), y_all.split(16))),
        "x_probe": x_all[:32],
        "y_probe": y_all[:32],
    }
    exec(block, namespace)
    table = namespace["table"]
    assert list(table.index) == [-1, 0, 1, 2, 3, 4, 5]  # -1: the line grid
    steps = table.loc[0:]
    assert steps["line_probe_floor_a"].notna().all()
    # Adam's update is not along -g: the measured cosine says so.
    assert (steps["cos_grad_update"] > -0.999).all()
