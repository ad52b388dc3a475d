"""The Ray backend: a local Ray instance trains a two-run sweep into the same layout."""

from __future__ import annotations

import pytest

from sgdwalk import load
from sgdwalk.store import read_manifest
from sgdwalk.studies import load_study, run_sweep

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'sgdwalk[ray]')")


def test_ray_runs_a_two_run_sweep_like_the_local_backend(small_study, tmp_path):
    study = load_study(small_study())
    result = run_sweep(study, tmp_path / "ray", workers=2, backend="ray", progress=False)
    assert result.ok, result.summary()
    assert [r.status for r in result.records] == ["completed", "completed"]
    assert not ray.is_initialized()  # the instance it started is shut down again
    manifest = read_manifest(result.root)
    assert manifest["backend"] == "ray" and len(manifest["runs"]) == 2
    table = load(result.root).table()
    # the local pool gives each run the same torch threads (cores // workers) as Ray does
    local = load(run_sweep(study, tmp_path / "local", workers=2, progress=False).root).table()
    assert sorted(table["run_id"].unique()) == sorted(local["run_id"].unique())
    assert len(table) == len(local) == 2 * 13 and set(table["study"]) == {"small"}
    key = ["run_id", "step"]
    rows = table.drop(columns="run_dir").sort_values(key).reset_index(drop=True)
    assert rows.equals(local.drop(columns="run_dir").sort_values(key).reset_index(drop=True))
    again = run_sweep(study, tmp_path / "ray", workers=2, backend="ray", progress=False)
    assert all(r.skipped for r in again.records)  # nothing to do: Ray is not even started
