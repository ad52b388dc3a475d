"""One run's scalar table as a file other tools read: Parquet or CSV."""

from __future__ import annotations

from pathlib import Path

from sgdwalk.errors import StoreError
from sgdwalk.store.artifacts import write_artifact
from sgdwalk.store.reader import read_run

FORMATS = ("parquet", "csv")


def export_run(path, out, fmt: str | None = None) -> Path:
    """Write the scalar table of the run in `path` (column "step" first, then one column per
    metric) to `out`, atomically; returns `out`.

    fmt: "parquet" (needs pyarrow) or "csv"; None: taken from the suffix of `out`. CSV floats
    are written in shortest round-trip form (pandas < 3 reads them back bit-exactly only with
    float_precision="round_trip"); missing values are empty fields, infinities "inf".
    """
    out = Path(out)
    if fmt is None:
        fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
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
        return write_artifact(out, lambda f: table.to_parquet(f, index=False), f"export {out}")
    return write_artifact(out, table.to_csv(index=False), f"export {out}")
