"""The embedded metric store: one SQLite file per run, its schema, commits and reads.

`values.MetricBuffer` turns logged values into rows in memory (no SQL); `MetricDb.write`
commits a batch of rows in one transaction with `INSERT OR REPLACE`, so rows are keyed by
(step, name) and re-logging a step after a resume replaces it. The schema table is in the
package docstring.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sgdwalk.errors import IncompleteRunError, StoreError
from sgdwalk.store.disk import fault
from sgdwalk.store.values import STORED_DTYPES, describe

if TYPE_CHECKING:  # imported where tables are read: training writes rows only
    import pandas as pd

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS scalars (step INTEGER NOT NULL, name TEXT NOT NULL, value REAL,"
    " PRIMARY KEY (step, name)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS vectors (step INTEGER NOT NULL, name TEXT NOT NULL,"
    " dtype TEXT NOT NULL, length INTEGER NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (step, name)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT)",
)
_BUSY_TIMEOUT_S = 30.0  # how long a statement waits for a lock before failing


# ---------------------------------------------------------------------------------------
# the database file


class MetricDb:
    """A connection to RUN_DIR/metrics.sqlite, for writing (WAL, NORMAL sync) or reading.

    A read connection opens the file with the URI `mode=ro`; each read is one statement or
    one read transaction, so it sees a consistent committed prefix and never blocks the writer.
    """

    def __init__(self, file: Path, write: bool, create: bool = False):
        self.file = file
        self.where = str(file)
        self.con = None
        try:
            if write:
                self.con = sqlite3.connect(
                    file, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
                self._check(allow_empty=create)
                self.con.execute("PRAGMA journal_mode=WAL")
                self.con.execute("PRAGMA synchronous=NORMAL")
                if create:
                    self._create_schema()
            else:
                self.con = _connect_read(file)
            self._check(allow_empty=False)
        except BaseException as exc:
            self.close()
            code = getattr(exc, "sqlite_errorname", "") or ""
            if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
                raise StoreError(
                    f"{file}: expected an sqlite metric store, got {_describe_file(file, exc)}"
                ) from None
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise fault(exc, self.where, "write metrics" if write else "read metrics") from None
            raise

    def _create_schema(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")
        for sql in _SCHEMA:
            self.con.execute(sql)
        self.con.execute(
            "INSERT OR IGNORE INTO info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self.con.execute("COMMIT")

    def _check(self, allow_empty: bool) -> None:
        sql = "SELECT name FROM sqlite_master WHERE type='table'"
        tables = {r[0] for r in self.con.execute(sql)}
        if allow_empty and not tables:
            return
        missing = {"scalars", "vectors", "info"} - tables
        if missing:
            # no table at all: the start of a store whose maker was killed, not a damaged one
            error = IncompleteRunError if not tables else StoreError
            raise error(
                f"{self.file}: expected an sqlite metric store, got an sqlite database without "
                f"the table(s) {', '.join(sorted(missing))}"
            )
        row = self.con.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
        if row is None or not str(row[0]).isdigit() or int(row[0]) > SCHEMA_VERSION:
            got = "none" if row is None else repr(row[0])
            raise StoreError(
                f"{self.file}: expected schema_version <= {SCHEMA_VERSION}, got {got} "
                "(written by a newer sgdwalk?)"
            )

    def close(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            con.close()

    # ---- writing

    def write(self, scalars: list, vectors: list, info: dict | None = None, durable=False):
        """Commit rows in one transaction; on any failure nothing of the batch is kept.

        durable: also fsync the WAL at this commit (and so every earlier commit), used
        before a checkpoint is written so rows never lag behind a checkpoint on disk.
        """
        con = self.con
        try:
            if durable:
                con.execute("PRAGMA synchronous=FULL")
            con.execute("BEGIN IMMEDIATE")
            if scalars:
                con.executemany("INSERT OR REPLACE INTO scalars VALUES (?, ?, ?)", scalars)
            if vectors:
                con.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", vectors)
            for key, value in (info or {}).items():
                con.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, str(value)))
            con.execute("COMMIT")
        except BaseException as exc:
            if con.in_transaction:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                n = len(scalars) + len(vectors)
                raise fault(exc, self.where, f"commit {n} metric rows") from None
            raise
        finally:
            if durable:
                try:
                    con.execute("PRAGMA synchronous=NORMAL")
                except sqlite3.Error:
                    pass

    # ---- reading

    def query(self, sql: str, params=()) -> list[tuple]:
        try:
            return self.con.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise fault(exc, self.where, "read the metric store") from None

    def names(self) -> dict[str, list[str]]:
        """Logged names of each kind, read in one transaction so both lists match one prefix."""
        try:
            self.con.execute("BEGIN")
            try:
                out = {
                    kind: [r[0] for r in self.con.execute(f"SELECT DISTINCT name FROM {kind}")]
                    for kind in ("scalars", "vectors")
                }
            finally:
                self.con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise fault(exc, self.where, "read the metric store") from None
        return {k: sorted(v) for k, v in out.items()}

    def scalars(self, names: list[str] | None, wide: bool) -> pd.DataFrame:
        import pandas as pd

        if names is not None:
            names = _check_names(names, self.where)
        sql = "SELECT step, name, value FROM scalars"
        params: tuple = ()
        if names is not None:
            sql += f" WHERE name IN ({', '.join('?' * len(names))})"
            params = tuple(names)
        self._check_rows("scalars", _BAD_SCALAR, "an integer step, a text name and a REAL "
                         "value or NULL")
        rows = self.query(sql + " ORDER BY step, name", params)
        long = pd.DataFrame.from_records(rows, columns=["step", "name", "value"])
        long = long.astype({"step": "int64", "value": "float64"})
        if not wide:
            return long
        table = long.pivot(index="step", columns="name", values="value")
        table.columns.name = None
        if names is not None:
            table = table.reindex(columns=names)
        if table.empty and len(table.index) == 0:
            table.index = pd.Index([], dtype="int64", name="step")
        return table.astype("float64")

    def vectors(self, name: str) -> pd.DataFrame:
        import pandas as pd

        if not isinstance(name, str):
            raise StoreError(f"{self.where}: expected a vector name (str), got {describe(name)}")
        self._check_rows("vectors", _BAD_VECTOR, "an integer step, a dtype of "
                         f"{', '.join(STORED_DTYPES)} and a blob of exactly length values",
                         name)
        rows = self.query(
            "SELECT step, dtype, length, value FROM vectors WHERE name = ? ORDER BY step", (name,)
        )
        width = max((r[2] for r in rows), default=0)
        dtype = np.float32 if all(r[1] == "float32" for r in rows) else np.float64
        data = np.full((len(rows), width), np.nan, dtype=dtype)
        for i, (_, kind, length, blob) in enumerate(rows):
            data[i, :length] = np.frombuffer(blob, dtype=STORED_DTYPES[kind], count=length)
        steps = pd.Index([r[0] for r in rows], dtype="int64", name="step")
        return pd.DataFrame(data, index=steps, columns=[f"v{i}" for i in range(width)])


    def _check_rows(self, table: str, bad: str, expected: str, name: str | None = None) -> None:
        """Refuse a table (the rows of `name`) holding a row the writer never writes (edited
        by hand, or by another tool): one line naming the row, not a wrong number or a
        traceback."""
        only = "" if name is None else " AND name = ?"
        found = self.query(f"SELECT step, name, {bad} FROM {table} WHERE {bad} IS NOT NULL"
                           f"{only} LIMIT 1", () if name is None else (name,))
        if found:
            step, name, got = found[0]
            raise StoreError(f"{self.where}: {table} row (step {step!r}, name {name!r}): "
                             f"expected {expected}, got {got}")


# The SQL expression that describes what is wrong with a row (NULL: nothing).
_BAD_SCALAR = (
    "CASE WHEN typeof(step) != 'integer' THEN 'a step of type ' || typeof(step)"
    " WHEN typeof(name) != 'text' THEN 'a name of type ' || typeof(name)"
    " WHEN typeof(value) NOT IN ('real', 'integer', 'null')"
    " THEN 'a value of type ' || upper(typeof(value)) || ' ' || quote(substr(value, 1, 20))"
    " END"
)
_BAD_VECTOR = (
    "CASE WHEN typeof(step) != 'integer' THEN 'a step of type ' || typeof(step)"
    " WHEN typeof(name) != 'text' THEN 'a name of type ' || typeof(name)"
    " WHEN dtype NOT IN (" + ", ".join(f"'{k}'" for k in STORED_DTYPES) + ")"
    " THEN 'dtype ' || quote(substr(dtype, 1, 20))"
    " WHEN typeof(length) != 'integer' OR length < 0"
    " THEN 'length ' || quote(substr(length, 1, 20))"
    " WHEN typeof(value) != 'blob' THEN 'a value of type ' || upper(typeof(value))"
    " WHEN length(value) != length * CASE dtype "
    + " ".join(f"WHEN '{k}' THEN {v.itemsize}" for k, v in STORED_DTYPES.items())
    + " END THEN 'length ' || length || ' with a blob of ' || length(value) || ' bytes'"
    " END"
)


def _connect_read(file: Path) -> sqlite3.Connection:
    uri = file.absolute().as_uri()
    con = sqlite3.connect(
        f"{uri}?mode=ro",
        uri=True,
        timeout=_BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorname", "") or ""
        wal = file.with_name(file.name + "-wal")
        if not (code.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")) and not wal.exists()):
            con.close()
            raise
        # A WAL database in a read-only folder with no writer (no -wal file): the -shm index
        # cannot be created, and nothing can change the file, so read it as immutable.
        con.close()
        con = sqlite3.connect(
            f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False
        )
    return con


def _describe_file(file: Path, exc: BaseException) -> str:
    try:
        with open(file, "rb") as f:
            head = f.read(16)
        size = file.stat().st_size
    except OSError as err:
        return f"an unreadable file ({err.strerror})"
    if head == b"SQLite format 3\x00":
        return f"a damaged sqlite database ({size} bytes: {exc})"
    return f"a file that is not an sqlite database ({size} bytes starting {head!r})"


def _check_names(names, where) -> list[str]:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise StoreError(f"{where}: expected a list of metric names, got {describe(names)}")
    return list(names)
