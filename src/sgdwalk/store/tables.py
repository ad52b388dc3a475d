"""Tables of runs for analysis and plots: read one run, many runs, export, and find runs."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import tomllib

from sgdwalk.errors import StoreError
from sgdwalk.store.artifacts import write_artifact
from sgdwalk.store.run import CONFIG, RunStore

RUN_COLUMNS = ("run_id", "run_dir", "status")


def read_run(path) -> pd.DataFrame:
    """The wide scalar table of one run: index "step", one float64 column per metric name."""
    with RunStore.open(path) as run:
        return run.scalars()


def run_info(path) -> dict:
    """The per-run columns of `read_runs`: run_id, run_dir, status and flattened config keys.

    run_id is meta["run_id"] when the writer recorded one, else the folder name. Config keys
    are dotted paths ("optim.lr"); keys outside any table get a "config." prefix
    ("config.name") so they cannot clash with step/name/value; lists become tuples so the
    columns can be grouped on.
    """
    with RunStore.open(path) as run:
        return _info(run)


def _info(run: RunStore) -> dict:
    meta = run.meta()
    try:
        config = tomllib.loads(run.config_text())
    except tomllib.TOMLDecodeError as exc:
        raise StoreError(f"run {run.path}: {CONFIG}: expected valid TOML, got {exc}") from None
    info = {
        "run_id": str(meta.get("run_id", run.path.name)),
        "run_dir": str(run.path),
        "status": meta.get("status"),
    }
    for key, value in _flatten(config).items():
        info[key if "." in key else f"config.{key}"] = value
    return info


def read_runs(paths, names: list[str] | None = None, wide: bool = True) -> pd.DataFrame:
    """One table of many runs, with each run's config and status joined to its rows.

    wide: columns run_id, run_dir, status, the config columns ("optim.lr", ...), step, then one
    column per metric; one row per (run, step). long (wide=False): ..., step, name, value.
    A config key absent from a run (a None default is omitted from TOML) is NaN there.
    names: only these metrics (each requested name is a column in wide form).
    """
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    frames = []
    config_columns: dict[str, None] = {}
    for path in paths:
        with RunStore.open(path) as run:
            info = _info(run)
            table = run.scalars(names, wide=wide)
        if wide:
            table = table.reset_index()
        clash = sorted(set(info) & set(table.columns))
        if clash:
            raise StoreError(
                f"run {path}: expected metric names distinct from config keys, got {clash}"
            )
        for key in info:
            if key not in RUN_COLUMNS:
                config_columns.setdefault(key)
        run_cols = pd.DataFrame({k: [v] * len(table) for k, v in info.items()}, index=table.index)
        frames.append(pd.concat([run_cols, table], axis=1))
    if not frames:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "step"])
    out = pd.concat(frames, ignore_index=True, sort=False)
    metric_cols = [c for c in out.columns if c not in config_columns and c not in RUN_COLUMNS]
    metric_cols.remove("step")
    order = [*RUN_COLUMNS, *sorted(config_columns), "step", *metric_cols]
    out = out[order]
    return out.astype({"step": "int64"}) if len(out) else out


def export_run(path, out, fmt: str | None = None) -> Path:
    """Write the wide scalar table of a run (column "step" first) to `out`, atomically.

    fmt: "parquet" (needs pyarrow) or "csv"; None: taken from the suffix of `out`. CSV floats
    are written in shortest round-trip form (pandas < 3 reads them back bit-exactly only with
    float_precision="round_trip"); missing values are empty fields, infinities "inf".
    """
    out = Path(out)
    if fmt is None:
        fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("parquet", "csv"):
        raise StoreError(f"export {out}: expected fmt 'parquet' or 'csv', got {fmt!r}")
    table = read_run(path).reset_index()
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise StoreError(
                f"export {out}: expected pyarrow for parquet (pip install 'sgdwalk[parquet]'), "
                "got ImportError"
            ) from None

        def write(f):
            table.to_parquet(f, index=False)
    else:

        def write(f):
            f.write(table.to_csv(index=False).encode("utf-8"))

    return write_artifact(out, write, f"export {out}")


def _flatten(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = tuple(value)
        else:
            out[name] = value
    return out
