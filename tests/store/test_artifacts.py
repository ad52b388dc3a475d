"""Files that are not run stores go through one writer: whole or not at all, one line on a
full disk or a read-only folder, the previous version kept."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from sgdwalk.errors import StoreError
from sgdwalk.store import artifacts, write_artifact
from sgdwalk.store.disk import TMP_MARK


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_text_bytes_and_a_writer_function_round_trip_into_new_folders(tmp_path):
    out = tmp_path / "a" / "b"
    assert write_artifact(out / "t.txt", "héllo\n") == out / "t.txt"
    write_artifact(out / "b.bin", b"\x00\x01")
    write_artifact(out / "f.bin", lambda f: f.write(b"from a function"))
    assert (out / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (out / "b.bin").read_bytes() == b"\x00\x01"
    assert (out / "f.bin").read_bytes() == b"from a function"
    assert _names(out) == ["b.bin", "f.bin", "t.txt"]  # no temporary left


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path):
    path = write_artifact(tmp_path / "report.html", "old")

    def full(f):
        f.write(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(StoreError) as info:
        write_artifact(path, full, f"report {path}")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"report {path}: expected free disk space to write report.html")
    assert path.read_text() == "old" and _names(tmp_path) == ["report.html"]


def test_a_read_only_folder_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(StoreError, match=r"^claims .*claims.json: expected a writable folder to "
                                         r"write claims.json, got: Read-only file system"):
        write_artifact(tmp_path / "claims.json", "{}", f"claims {tmp_path / 'claims.json'}")
    assert not any(TMP_MARK in n for n in _names(tmp_path))


def test_every_file_outside_the_run_stores_goes_through_write_artifact(tmp_path, monkeypatch):
    """sweep.json, claims.json, figures, report.html and exported tables."""
    from sgdwalk.analysis import write_claims_json
    from sgdwalk.analysis.frames import Tables
    from sgdwalk.analysis.synthetic import run_frame
    from sgdwalk.analysis.verdict import Claim
    from sgdwalk.plots import make_figures, save_figure
    from sgdwalk.plots.report import write_report
    from sgdwalk.store import RunStore, export_run, write_manifest

    written = []
    real = artifacts.write_atomic
    monkeypatch.setattr(artifacts, "write_atomic",
                        lambda path, write, where: (written.append(path.name),
                                                    real(path, write, where)))
    write_manifest(tmp_path, {"runs": []})
    write_claims_json([Claim("C1", "claim", "test")], tmp_path / "claims.json")
    table = run_frame("r", {"dist_init": np.arange(1.0, 9.0)}, steps_per_epoch=4)
    tables = Tables.from_frames(table)
    figure = next(f for f in make_figures(tables) if f.name == "distance")
    save_figure(figure, tmp_path / "figures")
    write_report(tables, tmp_path / "report.html", n_boot=10)
    with RunStore.create(tmp_path / "run", "", {}) as run:
        run.log(0, {"loss": 1.0})
    export_run(tmp_path / "run", tmp_path / "loss.csv")
    assert written == ["sweep.json", "claims.json", "distance.png", "distance.pdf",
                       "report.html", "loss.csv"]
