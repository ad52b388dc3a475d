"""Checkpoints: atomic writes, rotation, weights_only loading, refusal of unsafe files."""

from __future__ import annotations

import collections
import errno
import hashlib
import io
import os
import pickle
import random
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from sgdwalk.errors import SgdwalkWarning, StoreError
from sgdwalk.store import RunStore


def _state(step: int) -> dict:
    return {
        "model": {"w": torch.full((3,), float(step))},
        "step": step,
        "rng": torch.get_rng_state(),
    }


def test_checkpoints_rotate_keeping_the_newest(make_run):
    store = make_run()
    for step in (100, 200, 300, 400, 500):
        path = store.save_checkpoint(step, _state(step), keep=2)
        assert path.name == f"step-{step:08d}.pt"
    names = sorted(p.name for p in (store.path / "checkpoints").iterdir())
    assert names == ["step-00000400.pt", "step-00000400.pt.sha256",
                     "step-00000500.pt", "step-00000500.pt.sha256"]
    step, state = store.latest_checkpoint()
    assert step == 500 and state["step"] == 500
    assert torch.equal(state["model"]["w"], torch.full((3,), 500.0))
    assert torch.equal(state["rng"], torch.get_rng_state())


def test_no_checkpoint_gives_none(make_run):
    assert make_run().latest_checkpoint() is None


def test_checkpoint_orders_by_step_not_by_name(make_run):
    store = make_run()
    store.save_checkpoint(99_999_999, _state(1), keep=5)
    store.save_checkpoint(100_000_000, _state(2), keep=5)  # one more digit
    assert store.latest_checkpoint()[0] == 100_000_000


def test_checkpoint_commits_buffered_rows_first(make_run):
    store = make_run()
    store.log(7, {"loss": 0.5})
    store.save_checkpoint(7, _state(7))
    con = sqlite3.connect(f"file:{store.path / 'metrics.sqlite'}?mode=ro", uri=True)
    assert con.execute("SELECT step, name, value FROM scalars").fetchall() == [(7, "loss", 0.5)]
    assert con.execute("SELECT value FROM info WHERE key='last_checkpoint_step'").fetchone() == (
        "7",
    )
    con.close()


def test_every_allowed_type_round_trips(make_run):
    store = make_run()
    state = {
        "od": collections.OrderedDict(a=1),
        "tuple": (1, 2.5, "x", None, True, 1 + 2j, b"raw"),
        "set": {1, 2},
        "size": torch.Size([2, 3]),
        "dtype": torch.float16,
        "device": torch.device("cpu"),
        "param": torch.nn.Parameter(torch.ones(2)),
        "gen": torch.Generator().manual_seed(3).get_state(),
    }
    store.save_checkpoint(1, state)
    _, loaded = store.latest_checkpoint()
    assert loaded["od"] == state["od"] and loaded["tuple"] == state["tuple"]
    assert loaded["set"] == {1, 2} and loaded["size"] == torch.Size([2, 3])
    assert loaded["dtype"] is torch.float16 and loaded["device"] == torch.device("cpu")
    assert torch.equal(loaded["param"], torch.ones(2))
    assert torch.equal(loaded["gen"], state["gen"])


def test_unloadable_state_is_refused_when_saving(make_run):
    store = make_run()
    with pytest.raises(
        StoreError, match=r"state\['rng'\]\[1\]: expected tensors.*got numpy.ndarray"
    ):
        store.save_checkpoint(1, {"rng": ("MT19937", np.zeros(3))})
    assert list((store.path / "checkpoints").iterdir()) == []


class _Evil:
    """Unpickling this creates a file: the side effect a malicious checkpoint would have."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(store, name: str, data: bytes, with_sum: bool) -> Path:
    path = store.path / "checkpoints" / name
    path.write_bytes(data)
    if with_sum:  # a forged checksum file: the bytes match it
        Path(f"{path}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return path


def _evil_bytes(form: str, marker) -> bytes:
    buf = io.BytesIO()
    if form == "torch_zip":
        torch.save({"model": _Evil(str(marker))}, buf)
    else:
        pickle.dump({"model": _Evil(str(marker))}, buf)
    return buf.getvalue()


@pytest.mark.parametrize("form", ["torch_zip", "raw_pickle"])
def test_a_malicious_newest_checkpoint_without_its_sum_is_passed_over_unread(make_run, tmp_path,
                                                                            form):
    store = make_run()
    store.save_checkpoint(100, _state(100))
    marker = tmp_path / "pwned"
    _plant(store, "step-00000200.pt", _evil_bytes(form, marker), with_sum=False)
    with pytest.warns(SgdwalkWarning) as seen:
        step, _ = store.latest_checkpoint()
    assert step == 100
    (message,) = [str(w.message) for w in seen]
    assert "checkpoint step-00000200.pt: expected its checksum file step-00000200.pt.sha256, " \
        "got none; not loaded, resuming from step-00000100.pt instead" in message
    assert not marker.exists()


@pytest.mark.parametrize("form", ["torch_zip", "raw_pickle"])
def test_a_malicious_newest_checkpoint_with_a_forged_sum_is_refused_and_never_executed(
        make_run, tmp_path, form):
    store = make_run()
    store.save_checkpoint(100, _state(100))
    marker = tmp_path / "pwned"
    _plant(store, "step-00000200.pt", _evil_bytes(form, marker), with_sum=True)
    with pytest.raises(StoreError) as info:
        store.latest_checkpoint()
    message = str(info.value)
    assert "checkpoint step-00000200.pt: expected tensors and plain containers" in message
    assert "not loaded" in message and "delete it to resume from step-00000100.pt" in message
    assert "\n" not in message
    assert not marker.exists()


def test_a_truncated_newest_checkpoint_is_passed_over_with_a_warning(make_run):
    store = make_run()
    store.save_checkpoint(100, _state(100), keep=3)
    newest = store.save_checkpoint(200, _state(200), keep=3)
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(SgdwalkWarning, match=r"step-00000200.pt: expected sha256 [0-9a-f]{64} "
                      r"\(step-00000200.pt.sha256\), got [0-9a-f]{64}"):
        assert store.latest_checkpoint()[0] == 100


def test_every_single_bit_flip_is_detected_and_the_previous_checkpoint_loads(make_run):
    """50 flips at seeded random offsets, each in a fresh copy of the newest checkpoint:
    none loads; each time the previous checkpoint is loaded, equal to what was saved."""
    store = make_run()
    store.save_checkpoint(100, _state(100))
    newest = store.save_checkpoint(200, _state(200))
    good = newest.read_bytes()
    rng = random.Random(16)
    for offset in sorted(rng.sample(range(len(good)), 50)):
        bad = bytearray(good)
        bad[offset] ^= 1 << rng.randrange(8)
        newest.write_bytes(bytes(bad))
        with pytest.warns(SgdwalkWarning, match="step-00000200.pt: expected sha256"):
            step, state = store.latest_checkpoint()
        assert step == 100, offset
        assert torch.equal(state["model"]["w"], torch.full((3,), 100.0)), offset
    newest.write_bytes(good)
    assert store.latest_checkpoint()[0] == 200


def test_no_checkpoint_that_passes_its_checksum_is_one_error(make_run):
    store = make_run()
    for step in (100, 200):
        path = store.save_checkpoint(step, _state(step))
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 4
        path.write_bytes(bytes(data))
    with pytest.warns(SgdwalkWarning), pytest.raises(StoreError) as info:
        store.latest_checkpoint()
    assert "expected a checkpoint whose bytes match its checksum, got none that does" in str(
        info.value)


def test_a_checkpoint_of_another_run_is_refused(make_run):
    mine = make_run("mine")
    other = make_run("other", **{"optim.lr": 0.05})
    mine.save_checkpoint(100, _state(100))
    copied = other.save_checkpoint(200, _state(200))
    for file in (copied, Path(f"{copied}.sha256")):  # copied in with its checksum
        shutil.copy(file, mine.path / "checkpoints" / file.name)
    with pytest.raises(StoreError) as info:
        mine.latest_checkpoint()
    message = str(info.value)
    assert f"checkpoint step-00000200.pt: expected a checkpoint of this run (run id " \
        f"{mine.run_id()}), got a checkpoint of run {other.run_id()}" in message
    assert "delete it to resume from step-00000100.pt" in message
    assert mine.run_id() != other.run_id()


def test_every_checkpoint_holds_the_run_id_and_config(make_run):
    store = make_run()
    path = store.save_checkpoint(5, _state(5))
    raw = torch.load(path, weights_only=True)
    assert raw["run"] == {"run_id": store.run_id(), "config": store.config_text()}
    assert "run" not in store.latest_checkpoint()[1]  # the store checks it and takes it off
    with pytest.raises(StoreError, match="expected a state without the reserved key 'run'"):
        store.save_checkpoint(6, {"run": 1})


def test_a_symlinked_checkpoints_folder_is_refused_and_never_rotated(make_run, tmp_path):
    """A `checkpoints` folder shared between runs through a symbolic link: neither saving
    (whose rotation would delete the other run's files) nor loading follows it."""
    other = make_run("other", **{"optim.lr": 0.05})
    for step in (1, 2, 3):
        other.save_checkpoint(step, _state(step))
    before = sorted(p.name for p in (other.path / "checkpoints").iterdir())
    mine = make_run("mine")
    (mine.path / "checkpoints").rmdir()
    (mine.path / "checkpoints").symlink_to(other.path / "checkpoints")
    for call in (lambda: mine.save_checkpoint(9, _state(9), keep=1), mine.latest_checkpoint):
        with pytest.raises(StoreError, match="checkpoints: expected the run's own checkpoints "
                           "folder, got a symbolic link to"):
            call()
    assert sorted(p.name for p in (other.path / "checkpoints").iterdir()) == before


def test_disk_full_while_checkpointing_keeps_the_previous_one(make_run, monkeypatch):
    store = make_run()
    store.save_checkpoint(100, _state(100))
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, io.BytesIO())
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    store.log(200, {"loss": 1.0})
    with pytest.raises(StoreError) as info:
        store.save_checkpoint(200, _state(200))
    assert "expected free disk space to write step-00000200.pt, got: the disk is full" in str(
        info.value
    )
    monkeypatch.undo()
    assert sorted(p.name for p in (store.path / "checkpoints").iterdir()) == [
        "step-00000100.pt", "step-00000100.pt.sha256"]
    step, state = store.latest_checkpoint()
    assert step == 100 and state["step"] == 100
    assert store.scalars()["loss"].tolist() == [1.0]  # rows were committed before the save


def test_checkpoint_argument_checks(make_run):
    store = make_run()
    with pytest.raises(StoreError, match="expected keep >= 1 checkpoints, got 0"):
        store.save_checkpoint(1, {}, keep=0)
    with pytest.raises(StoreError, match="expected an integer step >= -1, got -3"):
        store.save_checkpoint(-3, {})
    store.log(5, {"a": 1.0})
    with pytest.raises(StoreError, match="expected keep >= 1 checkpoints, got 0"):
        store.save_checkpoint(5, {}, keep=0)
    assert store.scalars().empty  # a refused call commits nothing
    assert list((store.path / "checkpoints").iterdir()) == []
    with pytest.raises(StoreError, match="expected a checkpoint state dict, got list"):
        store.save_checkpoint(1, [1])


def test_stale_temporary_files_are_cleaned_on_the_next_save(make_run):
    store = make_run()
    stale = store.path / "checkpoints" / ".step-00000100.pt.tmp-99999"
    stale.write_bytes(b"half")
    store.save_checkpoint(200, _state(200))
    assert not stale.exists()


def test_reader_loads_checkpoints(make_run):
    store = make_run()
    store.save_checkpoint(3, _state(3))
    with RunStore.open(store.path) as reader:
        assert reader.latest_checkpoint()[0] == 3
