"""Start-up: the time from launching `sgdwalk train default` to its first progress line.

    python benchmarks/startup.py [--quick]

Each command runs in a fresh interpreter; the rounds interleave them (the order rotates each
round) and the table gives medians. `first progress` is the moment the progress bar's first
line ("default:   0%|") reaches stderr, after which the run is stopped; the floors beside it
are the imports it cannot avoid: Python alone, `import torch`, and torch with
`torch._dynamo`, which every `torch.optim` optimizer imports when it is built
(`Optimizer.add_param_group` is wrapped by `torch._disable_dynamo`). `import torch,
sklearn.datasets` is what reading the digits through scikit-learn cost on top of torch (the
digits are now read without it). Two clocks: elapsed
(what a user waits, inflated by a busy neighbour on a shared machine) and the child's CPU
time (user + system, from `wait4`; what an idle machine would take on one core).

Target (the performance issue): first progress within 3 s on an idle machine.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Options, script, table

SRC = str(Path(__file__).resolve().parents[1] / "src")
COMMANDS = {
    "python": ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "import torch, torch._dynamo": ["-c", "import torch, torch._dynamo"],
    "import sgdwalk.cli": ["-c", "import sgdwalk.cli"],
    "import torch, sklearn.datasets": ["-c", "import torch, sklearn.datasets"],
}
TRAIN = ["-m", "sgdwalk.cli", "train", "default", "--set", "train.epochs=1"]
MARK = b"default:"


def launch(args: list[str], until: bytes | None) -> tuple[float, float]:
    """(elapsed s, child CPU s) of `python args` to its end, or to the first stderr output
    containing `until` (then the child is stopped)."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    began = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env)
    seen = b""
    if until is not None:
        while until not in seen:
            chunk = os.read(child.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        elapsed = time.perf_counter() - began
        if until in seen:
            child.send_signal(signal.SIGKILL)
        else:
            raise RuntimeError(f"startup benchmark: no progress line from {args}: {seen[-400:]!r}")
    else:
        child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = status  # reaped here, not by Popen
    child.stderr.close()
    if until is None:
        elapsed = time.perf_counter() - began
        if status != 0:
            raise RuntimeError(f"startup benchmark: {args} failed with status {status}")
    return elapsed, usage.ru_utime + usage.ru_stime


def run(opts: Options) -> None:
    rounds = 2 if opts.quick else 5
    with tempfile.TemporaryDirectory() as out:
        fns = {**{k: (v, None) for k, v in COMMANDS.items()},
               "sgdwalk train default: first progress": ([*TRAIN, "--out", out], MARK)}
        names = list(fns)
        got: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for r in range(rounds):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                got[n].append(launch(*fns[n]))
    rows = [[n, f"{statistics.median(w for w, _ in v):.2f}",
             f"{statistics.median(c for _, c in v):.2f}"] for n, v in got.items()]
    print("\n## Start-up: seconds from launch (medians of interleaved rounds)\n")
    print(table(["command", "elapsed s", "child CPU s"], rows))
    print(f"\n{rounds} rounds. Target: first progress within 3 s on an idle machine.")


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
