"""Run folders: create, reopen, config written once, meta updates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sgdwalk.config import config_from_toml
from sgdwalk.errors import StoreError
from sgdwalk.store import RunStore

from .conftest import config_text


def test_create_lays_out_the_run_folder(tmp_path):
    text = config_text(**{"optim.lr": 0.05})
    with RunStore.create(tmp_path / "a" / "run", text, {"seed": 1111}) as store:
        assert store.path == tmp_path / "a" / "run"
        names = sorted(
            p.name for p in store.path.iterdir() if not p.name.endswith(("-wal", "-shm"))
        )
        assert names == [".lock", "checkpoints", "config.toml", "meta.json", "metrics.sqlite"]
        assert store.config_text() == text
        assert config_from_toml(store.config_text()).optim.lr == 0.05
        assert store.meta() == {"seed": 1111}
    assert [p.name for p in store.path.iterdir() if ".tmp-" in p.name] == []


def test_create_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x.txt").write_text("")
    with pytest.raises(StoreError, match="expected a new or empty folder, got one holding x.txt"):
        RunStore.create(tmp_path / "run", config_text(), {})
    RunStore.create(tmp_path / "empty", config_text(), {}).close()
    with pytest.raises(StoreError, match="got one holding checkpoints, config.toml"):
        RunStore.create(tmp_path / "empty", config_text(), {})
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="expected a folder for the run, got an existing file"):
        RunStore.create(tmp_path / "file", config_text(), {})


def test_create_exist_ok_continues_the_run(tmp_path):
    with RunStore.create(tmp_path / "run", config_text(), {"seed": 1, "status": "running"}) as s:
        s.log(0, {"a": 1.0})
    with RunStore.create(tmp_path / "run", config_text(), {"resumed": True}, exist_ok=True) as s:
        assert s.meta() == {"seed": 1, "status": "running", "resumed": True}
        assert s.scalars()["a"].tolist() == [1.0]
    with pytest.raises(
        StoreError, match="expected the config of the existing run, got a different config_text"
    ):
        RunStore.create(tmp_path / "run", config_text(**{"optim.lr": 0.5}), {}, exist_ok=True)


def test_update_meta_merges_and_is_seen_by_readers(make_run):
    store = make_run(meta={"status": "running", "seed": 3})
    reader = RunStore.open(store.path)
    new = store.update_meta(status="finished", final_loss=np.float32(0.5), ended="2024-01-01")
    assert new == {"status": "finished", "seed": 3, "final_loss": 0.5, "ended": "2024-01-01"}
    assert reader.meta() == new
    store.update_meta(diverged_at=float("nan"))  # strict JSON: non-finite floats become null
    assert json.loads((store.path / "meta.json").read_text())["diverged_at"] is None
    with pytest.raises(StoreError, match=r"meta.bad: expected JSON values .*got builtins.object"):
        store.update_meta(bad=object())
    assert reader.meta()["status"] == "finished"  # a refused update writes nothing
    reader.close()


def test_create_checks_its_arguments(tmp_path):
    with pytest.raises(StoreError, match="expected config_text as str, got dict"):
        RunStore.create(tmp_path / "r", {}, {})
    with pytest.raises(StoreError, match="expected meta as a dict, got list"):
        RunStore.create(tmp_path / "r", "", [])
    assert not (tmp_path / "r").exists()  # nothing created for refused arguments


def test_reopen_for_writing_after_close(make_run):
    store = make_run()
    store.log(0, {"a": 1.0})
    store.close()
    store.close()  # closing twice is harmless
    with RunStore.open(store.path, write=True) as again:
        again.log(1, {"a": 2.0})
    assert RunStore.open(store.path).scalars()["a"].tolist() == [1.0, 2.0]
