"""Shared fixtures: tiny configs that train in well under a second, dataset files in the
official formats, a small study file, and a local HTTP server for the download paths."""

import http.server
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import settings

from sgdwalk.config import load_config

# The machines are noisy: a busy neighbour can make one example 3x slower.
settings.register_profile("sgdwalk", deadline=None, print_blob=True)
settings.load_profile("sgdwalk")

# One intra-op thread: on a shared 2-core machine, torch's two threads contend with
# pytest itself and make tiny ops 10-100x slower. Subprocesses started by the tests get
# OMP_NUM_THREADS=1 too, so their floats equal the in-process reference runs'.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"


def tiny_overrides(**extra):
    base = {
        "data.name": "digits",
        "data.probe_size": 64,
        "data.probe_batch": 32,
        "model.widths": "[16]",
        "optim.batch_size": 64,
        "optim.lr": 0.1,
        "train.epochs": 2,
        "train.progress": "false",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def tiny_config():
    """A factory: tiny_config(**{"optim.lr": 0.05}) -> RunConfig."""

    def make(**extra):
        return load_config(None, tiny_overrides(**extra))

    return make


# ---------------------------------------------------------------------------------------
# dataset files in the official formats (same encodings as tests/data/conftest.py)

CIFAR_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)


def write_cifar(folder: Path, per_file: int) -> Path:
    """cifar-10-batches-bin/ with the six binary batch files of `per_file` random records."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(CIFAR_FILES):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, per_file, dtype=np.uint8)
        pixels = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic, big-endian uint32 sizes, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim])
    return header + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes()


def write_mnist(folder: Path, n_train: int, n_test: int) -> Path:
    """The four raw MNIST IDX files with random images and cycling labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return folder


@pytest.fixture(scope="session")
def paper_data(tmp_path_factory):
    """{"cifar10": folder, "mnist": folder} of fixture-sized files in the official formats."""
    root = tmp_path_factory.mktemp("paper-data")
    return {"cifar10": write_cifar(root / "cifar-10-batches-bin", per_file=24),
            "mnist": write_mnist(root / "mnist", n_train=120, n_test=40)}


# ---------------------------------------------------------------------------------------
# a small study file

SMALL_STUDY = """\
# sgdwalk sweep {path} --scale cpu
# A small study for the tests (studies, reliability).
[study]
name = "{name}"

[base]
data.name = "digits"
data.probe_size = 64
data.probe_batch = 32
model.widths = [16]
optim.batch_size = 64
train.epochs = {epochs}
train.max_steps = {steps}
train.checkpoint_every = 7
walk.preset = "{preset}"

[grid]
train.seed = {seeds}

{variants}

[scale.cpu]
"""


@pytest.fixture
def small_study(tmp_path):
    """small_study(name, seeds, steps, variants, epochs, preset) -> path of a study TOML file:
    an MLP on digits, batch 64 (19 steps per epoch), at most `steps` steps, `preset` probes
    (cheap)."""

    def make(name="small", seeds=(1, 2), steps=12, variants="", epochs=1, preset="cheap"):
        path = tmp_path / f"{name}.toml"
        path.write_text(SMALL_STUDY.format(path=path, name=name, steps=steps, epochs=epochs,
                                           seeds=list(seeds), variants=variants,
                                           preset=preset))
        return path

    return make


# ---------------------------------------------------------------------------------------
# a local HTTP server for the download paths

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}  # replaced per server by a subclass

    def do_GET(self):  # noqa: N802 - the name http.server calls
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        kind, body = route
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if kind == "truncate":  # promise the whole body, send half, hang up
                self.wfile.write(body[: len(body) // 2])
            elif kind == "stall":  # send a third, then hold the line until the client dies
                self.wfile.write(body[: len(body) // 3])
                self.wfile.flush()
                time.sleep(30)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def http_server(monkeypatch):
    """A thread serving `routes` (path -> ("ok" | "truncate" | "stall", bytes)) on 127.0.0.1.

    Yields a namespace with `routes`, `base` (http://127.0.0.1:PORT) and `serve(path, body,
    kind="ok") -> url`. Proxy variables are cleared for this process and the subprocesses it
    starts, so urllib connects directly."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    routes: dict = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def serve(path: str, body: bytes, kind: str = "ok") -> str:
        routes[path] = (kind, body)
        return base + path

    try:
        yield SimpleNamespace(routes=routes, base=base, serve=serve)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
