"""RunStore: one run folder, opened to write (one process at a time) or to read (any number)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from sgdwalk.errors import ConfigError, IncompleteRunError, StoreError
from sgdwalk.store import checkpoints
from sgdwalk.store.disk import (
    LOCK_NAME,
    WriterLock,
    fault,
    make_whole,
    remove_stale_tmp,
    write_text_atomic,
)
from sgdwalk.store.metrics import MetricDb
from sgdwalk.store.values import MetricBuffer, check_step

if TYPE_CHECKING:  # pandas costs 0.3 s of start-up; training never reads tables
    import pandas as pd

CONFIG = "config.toml"
META = "meta.json"
METRICS = "metrics.sqlite"
CHECKPOINTS = "checkpoints"


class RunStore:
    """A run folder: config.toml, meta.json, metrics.sqlite, checkpoints/ and the writer .lock.

    Make one with `RunStore.create` (writer) or `RunStore.open` (reader; writer with
    write=True). A writer holds an exclusive lock on RUN_DIR/.lock until `close`; readers take
    no lock and see the metric rows committed so far. Use it as a context manager. One
    RunStore is meant for one thread at a time.
    """

    def __init__(self, path: Path, db: MetricDb, lock: WriterLock | None):
        self.path = path
        self._db = db
        self._lock = lock
        self._buffer = None
        self._run_id: str | None = None
        if lock is not None:
            kinds: dict[str, str] = {}
            for kind, table in (("scalar", "scalars"), ("vector", "vectors")):
                for (name,) in db.query(f"SELECT DISTINCT name FROM {table}"):
                    kinds[name] = kind
            self._buffer = MetricBuffer(f"run {path}", kinds)

    # ---- opening

    @classmethod
    def create(cls, path, config_text: str, meta: dict, exist_ok: bool = False) -> RunStore:
        """Make a run folder and open it for writing.

        path: the run folder; created with its parents. A new folder is made whole: filled
        under a temporary name (config.toml, meta.json, the metric tables, checkpoints/) and
        renamed into place, so no reader ever sees half of one. An existing non-empty folder
        is refused unless exist_ok, which reopens it to continue (resume): its config.toml
        must then hold exactly `config_text`, and `meta` is merged into the existing meta.json.
        config_text: the resolved config as TOML text, written once.
        meta: JSON-serialisable provenance (versions, seed, device, git revision, status...).
        """
        path = Path(path)
        where = f"run {path}"
        if not isinstance(config_text, str):
            got = type(config_text).__name__
            raise StoreError(f"{where}: expected config_text as str, got {got}")
        if not isinstance(meta, dict):
            raise StoreError(f"{where}: expected meta as a dict, got {type(meta).__name__}")
        meta_text = _meta_json(meta, where)
        if path.exists() and not path.is_dir():
            raise StoreError(f"{where}: expected a folder for the run, got an existing file")
        if not _holds_anything(path, where):
            made = _make_whole(path, config_text, meta_text, where)
            if made is not None:
                return cls(path, *made)
            # else another process made this run an instant ago: continue it as existing
        return cls._reopen(path, config_text, meta, exist_ok, where)

    @classmethod
    def _reopen(cls, path: Path, config_text: str, meta: dict, exist_ok: bool,
                where: str) -> RunStore:
        """Open an existing run folder to continue it (see `create`). A folder made before
        runs were made whole may lack its metric tables or checkpoints/: they are added."""
        lock = WriterLock(path)
        try:
            remove_stale_tmp(path)  # a writer killed mid-write left them; we hold the lock
            existing = sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)
            if existing and not exist_ok:
                raise StoreError(
                    f"{where}: expected a new or empty folder, got one holding "
                    f"{', '.join(existing[:4])}{' ...' if len(existing) > 4 else ''} "
                    "(pass exist_ok=True to continue that run)"
                )
            config_file = path / CONFIG
            if config_file.exists():
                old = _read_text(config_file, where)
                if old != config_text:
                    raise StoreError(
                        f"{where}: expected the config of the existing run, got a different "
                        "config_text (a run's config is written once)"
                    )
            else:
                write_text_atomic(config_file, config_text, where)
            if (path / META).exists():
                meta = {**_read_meta(path / META, where), **meta}
            write_text_atomic(path / META, _meta_json(meta, where), where)
            db = MetricDb(path / METRICS, write=True, create=True)
            try:
                (path / CHECKPOINTS).mkdir(exist_ok=True)
            except OSError as exc:
                db.close()
                raise fault(exc, where, "create the checkpoints folder") from None
        except BaseException:
            lock.release()
            raise
        return cls(path, db, lock)

    @classmethod
    def open(cls, path, write: bool = False) -> RunStore:
        """Open an existing run: to read (no lock, never blocks the writer) or, with write=True,
        to continue writing it (takes the writer lock or raises StoreError)."""
        path = Path(path)
        where = f"run {path}"
        if not (path / CONFIG).is_file() or not (path / METRICS).is_file():
            raise StoreError(
                f"{where}: expected a run folder with {CONFIG} and {METRICS}, got "
                f"{_describe_folder(path)}"
            )
        if not (path / META).is_file():
            raise IncompleteRunError(
                f"{where}: expected a run folder with {META}, got {_describe_folder(path)}"
            )
        lock = WriterLock(path) if write else None
        if lock is not None:
            remove_stale_tmp(path)
        try:
            db = MetricDb(path / METRICS, write=write)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            return cls(path, db, lock)
        except BaseException:
            db.close()
            if lock is not None:
                lock.release()
            raise

    def close(self) -> None:
        """Commit buffered rows and release the writer lock (the lock is released even when
        the commit fails, e.g. on a full disk; the error is raised after)."""
        try:
            if self._buffer is not None and self._db is not None:
                self.flush()
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def abandon(self) -> None:
        """After a failure: drop the rows not yet committed (what a kill would lose) and release
        the writer lock now, not when the process ends. A no-op on a closed store."""
        if self._buffer is not None:
            self._buffer.clear()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "write" if self._lock is not None else "read"
        return f"RunStore({str(self.path)!r}, {mode})"

    # ---- config and meta

    def config_text(self) -> str:
        """The resolved config as saved, TOML text."""
        return _read_text(self.path / CONFIG, f"run {self.path}")

    def meta(self) -> dict:
        """meta.json as a dict (read from disk each call, so readers see the writer's updates)."""
        return _read_meta(self.path / META, f"run {self.path}")

    def update_meta(self, **fields) -> dict:
        """Merge `fields` into meta.json, rewrite it atomically, and return the new dict."""
        self._writer("update meta.json")
        where = f"run {self.path}"
        text = _meta_json({**self.meta(), **fields}, where)
        write_text_atomic(self.path / META, text, where)
        return json.loads(text)

    # ---- metrics

    def log(self, step: int, values: dict) -> None:
        """Buffer one step's values; nothing touches disk until `flush`.

        values: name -> a scalar (Python, NumPy or 0-d torch; bool -> 0/1; None and NaN ->
        missing; +-inf kept) or a 1-D array/tensor/list (the vectors table). A name keeps
        the kind it was first logged with; "step", "run_id", "run_dir" and "status" are reserved.
        Values are copied now, so changing a tensor afterwards does not change the row.
        """
        self._writer("log metrics")
        self._buffer.add(step, values)

    def flush(self) -> None:
        """Commit the buffered rows in one transaction (INSERT OR REPLACE on (step, name)).

        On failure (e.g. a full disk) nothing of the batch is written, earlier rows stay intact,
        the rows stay buffered for a later flush, and a StoreError is raised.
        """
        self._writer("flush metrics")
        buf = self._buffer
        if len(buf):
            self._db.write(buf.scalars, buf.vectors)
            buf.clear()

    def discard(self) -> None:
        """Drop the rows logged since the last flush: exactly what a kill would lose."""
        self._writer("discard rows")
        self._buffer.clear()

    # ---- checkpoints

    def save_checkpoint(self, step: int, state: dict, keep: int = 2) -> Path:
        """Commit buffered rows durably, then write checkpoints/step-<step>.pt atomically and keep
        only the newest `keep` checkpoints. Rows on disk never lag behind a checkpoint.

        state: a dict of tensors, numbers, strings, bytes and dict/list/tuple/set of them
        (what torch.load(weights_only=True) reads back); anything else is refused here.
        """
        self._writer("save a checkpoint")
        where = f"run {self.path}"
        step = check_step(step, where)
        checkpoints.check_args(state, keep, where)
        if checkpoints.IDENTITY in state:
            raise StoreError(f"{where}: expected a state without the reserved key "
                             f"{checkpoints.IDENTITY!r}, got one")
        identity = {"run_id": self.run_id(), "config": self.config_text()}
        buf = self._buffer
        self._db.write(buf.scalars, buf.vectors, info={"last_checkpoint_step": step}, durable=True)
        buf.clear()
        return checkpoints.save(self.path / CHECKPOINTS, step,
                                {**state, checkpoints.IDENTITY: identity}, keep, where)

    def latest_checkpoint(self, map_location="cpu") -> tuple[int, dict] | None:
        """(step, state) of the newest checkpoint, loaded with torch.load(weights_only=True)
        onto `map_location`; None when the run has none.

        Its bytes are checked against its SHA-256 first: a damaged one is passed over for
        the previous one with a warning, and none undamaged is a StoreError. A checkpoint
        that fails to load, or that another run wrote (its run id is not this run's), raises
        StoreError naming the file (and the previous checkpoint, used once the bad file is
        deleted); nothing in it is executed.
        """
        return checkpoints.load_latest(self.path / CHECKPOINTS, f"run {self.path}",
                                       self.run_id(), map_location)

    def run_id(self) -> str:
        """The run id of config.toml as it is now (12 hex digits of its SHA-256, see
        `identity.run_id`)."""
        if self._run_id is None:
            from sgdwalk.config import config_from_toml
            from sgdwalk.store.identity import run_id

            try:
                self._run_id = run_id(config_from_toml(self.config_text()))
            except ConfigError as exc:
                raise StoreError(f"run {self.path}: {CONFIG}: {exc}") from None
        return self._run_id

    def check_config(self) -> None:
        """Refuse to continue a run whose config.toml was edited after it started (its run
        id no longer matches meta.json's): one line naming the changed keys, diffed against
        the config recorded in its newest checkpoint."""
        recorded = self.meta().get("run_id")
        now = self.run_id()
        if recorded is None or recorded == now:
            return
        where = f"run {self.path}"
        before = checkpoints.stored_config(self.path / CHECKPOINTS)
        changed = "the keys are unknown (no checkpoint records the original config)"
        if before is not None:
            changed = "changed: " + _config_diff(before, self.config_text())
        raise StoreError(
            f"{where}: {CONFIG}: expected the config the run started with (run id {recorded}),"
            f" got an edited one (run id {now}); {changed}; restore those values to resume "
            f"it, or continue it under the edit as a new run: sgdwalk resume {self.path} --fork"
        )

    def take_edit(self) -> tuple[str, tuple[int, dict]]:
        """For a fork: the edited config.toml text and the newest checkpoint, with this
        run's config.toml restored to the text it started with (recorded in that
        checkpoint), so the run stays true to its record. Refused when config.toml is not
        edited or no checkpoint records the original."""
        self._writer("fork the run")
        where = f"run {self.path}"
        recorded = self.meta().get("run_id")
        edited = self.config_text()
        if recorded is None or recorded == self.run_id():
            raise StoreError(f"{where}: {CONFIG}: expected an edited config to fork the run "
                             "with, got the run's own (resume it without --fork)")
        original = checkpoints.stored_config(self.path / CHECKPOINTS)
        if original is None:
            raise StoreError(f"{where}: expected a checkpoint that records the run's config to "
                             "fork from, got none")
        write_text_atomic(self.path / CONFIG, original, where)
        self._run_id = None
        found = self.latest_checkpoint()
        if found is None or self.run_id() != recorded:
            raise StoreError(f"{where}: expected a checkpoint of run {recorded} to fork from, "
                             "got none")
        return edited, found

    # ---- reading

    def scalars(self, names: list[str] | None = None, wide: bool = True) -> pd.DataFrame:
        """Committed scalar rows. wide: index "step" (int64), one float64 column per name
        (sorted, or in the order of `names`; a requested name never logged is all NaN);
        missing values are NaN. long (wide=False): columns step, name, value, sorted by step."""
        return self._reader().scalars(names, wide)

    def vectors(self, name: str) -> pd.DataFrame:
        """Committed rows of one vector metric: index "step", columns v0..v{K-1}. Exact
        float32 when every row was stored as float32, else float64; rows shorter than the
        longest are NaN-padded. A name never logged gives an empty frame."""
        return self._reader().vectors(name)

    def names(self) -> dict[str, list[str]]:
        """{"scalars": [...], "vectors": [...]}: committed metric names, sorted."""
        return self._reader().names()

    # ---- helpers

    def _writer(self, doing: str) -> None:
        if self._db is None:
            raise StoreError(
                f"run {self.path}: expected an open store to {doing}, got a closed one"
            )
        if self._lock is None:
            raise StoreError(
                f"run {self.path}: expected a store opened with write=True to {doing}, "
                "got a read-only one"
            )

    def _reader(self) -> MetricDb:
        if self._db is None:
            raise StoreError(f"run {self.path}: expected an open store to read, got a closed one")
        return self._db


def _config_diff(before: str, after: str) -> str:
    """"optim.lr 0.1 -> 0.5, model.widths [64] -> [32]": the keys whose values differ."""
    from sgdwalk.config import config_from_toml, dotted, to_dict

    old = dotted(to_dict(config_from_toml(before)))
    new = dotted(to_dict(config_from_toml(after)))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "no value"


def _holds_anything(path: Path, where: str) -> bool:
    try:
        return path.is_dir() and any(True for _ in path.iterdir())
    except OSError as exc:
        raise fault(exc, where, "list the run folder") from None


def _make_whole(path: Path, config_text: str, meta_text: str, where: str):
    """A new run at `path`, made whole (`disk.make_whole`): (MetricDb, WriterLock), or None
    when another process made that run first."""

    def fill(tmp: Path) -> None:
        write_text_atomic(tmp / CONFIG, config_text, where)
        write_text_atomic(tmp / META, meta_text, where)
        MetricDb(tmp / METRICS, write=True, create=True).close()  # no -wal left to move
        try:
            (tmp / CHECKPOINTS).mkdir()
        except OSError as exc:
            raise fault(exc, where, "create the checkpoints folder") from None

    lock = make_whole(path, fill, where)
    if lock is None:
        return None
    try:
        return MetricDb(path / METRICS, write=True), lock
    except BaseException:
        lock.release()
        raise


def _read_text(file: Path, where: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise fault(exc, where, f"read {file.name}") from None
    except UnicodeDecodeError:
        got = "undecodable bytes"
        raise StoreError(f"{where}: {file.name}: expected UTF-8 text, got {got}") from None


# The fields sgdwalk writes into meta.json and the JSON types each must have; others may
# be added by users and are kept as they are.
_META_TYPES = {
    **dict.fromkeys(("run_id", "name", "device", "status", "started", "ended", "study",
                     "variant", "scale", "data_source"), (str,)),
    **dict.fromkeys(("seed", "steps_done", "total_steps", "steps_per_epoch", "processes",
                     "parameters", "diverged_step", "torch_threads"), (int,)),
    **dict.fromkeys(("final", "last_finite", "sizes", "point"), (dict,)),
    "layers": (list,),
}


def _read_meta(file: Path, where: str) -> dict:
    text = _read_text(file, where)
    try:
        meta = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        got = f"invalid JSON ({exc})"
        raise StoreError(f"{where}: {file.name}: expected a JSON object, got {got}") from None
    if not isinstance(meta, dict):
        raise StoreError(f"{where}: {file.name}: expected a JSON object, got {type(meta).__name__}")
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            want = " or ".join({str: "a string", int: "an integer", dict: "an object",
                                list: "a list"}[t] for t in types)
            raise StoreError(f"{where}: {file.name}: {key}: expected {want} or null, got "
                             f"{type(value).__name__} {json.dumps(value)[:40]}")
    return meta


def _no_constant(name: str):
    """json.loads accepts NaN and Infinity, which strict JSON (and sgdwalk) never writes."""
    raise ValueError(f"the non-JSON constant {name}")


def _meta_json(meta: dict, where: str) -> str:
    try:
        return json.dumps(_plain(meta, where, "meta"), indent=2, sort_keys=True) + "\n"
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: expected JSON-serialisable meta, got {exc}") from None


def _plain(value, where: str, path: str):
    """JSON-ready copy: NumPy/torch scalars -> Python, Paths -> str, non-finite floats -> None
    (strict JSON has no NaN, so meta.json stays readable by any JSON tool)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                got = f"{type(k).__name__} {k!r}"
                raise StoreError(f"{where}: {path}: expected str keys, got {got}")
            out[k] = _plain(v, where, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _plain(item(), where, path)
    raise StoreError(
        f"{where}: {path}: expected JSON values (str, number, bool, None, list, dict), got "
        f"{type(value).__module__}.{type(value).__qualname__}"
    )


def _describe_folder(path: Path) -> str:
    if not path.exists():
        return "no such folder"
    if not path.is_dir():
        return "a file"
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError as exc:
        return f"an unreadable folder ({exc.strerror})"
    if not names:
        return "an empty folder"
    return "a folder holding " + ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
