"""Helpers for the fault tests: the CLI in a subprocess, one-line error checks, kills timed
on the store, small study files, and a local HTTP server for downloads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from sgdwalk.store import RunStore, read_run
from sgdwalk.store.checkpoints import checksum_problem


def cli(*args: str) -> list[str]:
    """The command line that runs `sgdwalk ARGS` with this interpreter."""
    return [sys.executable, "-m", "sgdwalk.cli", *map(str, args)]


def run_cli(*args, timeout: float = 300, env: dict | None = None):
    """Run `sgdwalk ARGS` to its end: the CompletedProcess (text stdout and stderr)."""
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout,
                          env=env)


def one_line_error(proc, *fragments: str) -> str:
    """Assert `proc` ended as a user error should: exit 2, one stderr line starting
    "sgdwalk: error: " that holds every fragment, no traceback. Returns the line."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sgdwalk: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def sets(overrides) -> list[str]:
    """["a=1", "b=2"] -> ["--set", "a=1", "--set", "b=2"]."""
    return [a for o in overrides for a in ("--set", o)]


def last_step(run_dir) -> int:
    """The newest step with a committed "loss" row; -1 when none (or no store yet)."""
    try:
        with RunStore.open(run_dir) as store:
            table = store.scalars(["loss"])
    except Exception:  # the store may not exist yet, or be created this instant
        return -1
    return int(table.index.max()) if len(table) else -1


def kill_when(cmd, ready, timeout: float = 120, group: bool = False) -> bool:
    """Start `cmd`; SIGKILL it (its process group with group=True) as soon as `ready()` is
    true. Returns whether the kill landed before the process ended by itself."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=group)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                if group:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.01)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def kill_after(cmd, seconds: float, timeout: float = 120) -> bool:
    """Start `cmd` and SIGKILL it `seconds` later; whether it was still running then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
        return True


def tree(folder: Path) -> list[str]:
    """Every path under `folder`, relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def tmp_files(run_dir) -> list[str]:
    """Half-written files (the store's `.NAME.tmp-PID`) anywhere under `run_dir`."""
    return sorted(p.name for p in Path(run_dir).rglob("*") if ".tmp-" in p.name)


def equal_states(a, b, where: str = "state") -> None:
    """Assert two checkpoint states (or meta values) are equal, tensors bit for bit."""
    if isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in b:
            equal_states(a[key], b[key], f"{where}.{key}")
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            equal_states(x, y, f"{where}[{i}]")
    elif isinstance(b, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b or (a != a and b != b), where  # NaN equals NaN here


def same_checkpoints(got_dir, want_dir) -> None:
    """The same checkpoint files (and their checksum files), each matching its checksum and
    loading to an equal state."""
    names = sorted(p.name for p in (Path(want_dir) / "checkpoints").iterdir())
    assert sorted(p.name for p in (Path(got_dir) / "checkpoints").iterdir()) == names
    for name in (n for n in names if n.endswith(".pt")):
        assert checksum_problem(Path(got_dir) / "checkpoints" / name) is None, name
        a = torch.load(Path(got_dir) / "checkpoints" / name, weights_only=True)
        b = torch.load(Path(want_dir) / "checkpoints" / name, weights_only=True)
        equal_states(a, b, name)


def same_run(got_dir, want_dir) -> None:
    """Rows, vectors, the meta that describes results, and every checkpoint: all equal."""
    assert read_run(got_dir).sort_index().equals(read_run(want_dir).sort_index())
    with RunStore.open(got_dir) as a, RunStore.open(want_dir) as b:
        assert a.names() == b.names()
        for name in b.names()["vectors"]:
            assert a.vectors(name).equals(b.vectors(name)), name
        meta_a, meta_b = a.meta(), b.meta()
    for key in ("status", "steps_done", "final", "total_steps", "sizes"):
        equal_states(meta_a.get(key), meta_b.get(key), key)
    same_checkpoints(got_dir, want_dir)
    assert not tmp_files(got_dir)
