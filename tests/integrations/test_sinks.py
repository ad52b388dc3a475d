"""TensorBoard and Weights & Biases sinks: what the walk stored is what the dashboard gets."""

from __future__ import annotations

import json
import math

import pytest

from sgdwalk.config import WalkConfig

from .conftest import plain_walk


def _walk_rows(images, sink):
    """Train the reference CNN with `sink` receiving each step's values; return them too."""
    rows = []

    def both(step, values):
        rows.append((step, values))
        sink(step, values)

    plain_walk(images, probes=WalkConfig(preset="economy"), sink=both)
    return rows


def test_tensorboard_gets_every_scalar_at_its_step(images, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sgdwalk.integrations.tensorboard import TensorBoardSink

    sink = TensorBoardSink(tmp_path)
    rows = _walk_rows(images, sink)
    sink.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    for step, values in rows:
        for name, value in values.items():
            if isinstance(value, float) and math.isfinite(value):
                events = {e.step: e.value for e in acc.Scalars(f"walk/{name}")}
                assert events[step] == pytest.approx(value, rel=1e-6), name
    assert any(tag.endswith("_layers") for tag in acc.Tags()["histograms"])


def test_wandb_offline_logs_late_values_on_their_own_axis(images, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from sgdwalk.integrations.wandb import WandbSink

    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = WandbSink(project="sgdwalk-test", mode="offline", dir=str(tmp_path))
    rows = _walk_rows(images, sink)
    sink(1, {"barrier_floor_1": 0.25})  # a late value, for an earlier step
    sink.finish()
    history = _offline_history(tmp_path)
    logged = [(h["walk_step"], h) for h in history if "walk_step" in h]
    assert [s for s, _ in logged][: len(rows)] == [s for s, _ in rows]
    assert logged[-1][0] == 1 and logged[-1][1]["walk/barrier_floor_1"] == 0.25
    first = dict(rows[0][1])
    assert logged[0][1]["walk/cos_grad_update"] == pytest.approx(first["cos_grad_update"])
    assert wandb.run is None  # finished


def _offline_history(root, timeout=60.0):
    """The history rows of the one offline run under `root`, once its log holds the exit
    record: wandb's service may still be writing the last block when `finish()` returns."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        records = _offline_records(root)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        assert time.monotonic() < deadline, "wandb wrote no exit record"
        time.sleep(0.2)
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
             for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]


def _offline_records(root):
    """The protobuf `Record`s of the run's .wandb file: a 7-byte W&B header, then LevelDB
    log records (32 KiB blocks; each record a 4-byte checksum, a 2-byte little-endian
    length, a 1-byte type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = root.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if pos + 7 + length > len(data):
            break  # a record still being written
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            records.append(record)
            buf = b""
    return records
