"""Run folders and the embedded metric store: the only code in sgdwalk that touches disk.

A run folder (made whole: filled under a hidden temporary name, `.RUN_DIR.tmp-PID.RANDOM`,
then renamed into place, so a reader never finds half of one)::

    RUN_DIR/
      config.toml      the resolved config (TOML text from the caller), written once, atomically
      meta.json        provenance dict (versions, seed, device, git revision, started/ended,
                       status, ...), rewritten atomically by update_meta
      metrics.sqlite   the metric store below (SQLite, WAL journal, synchronous=NORMAL)
      checkpoints/     step-00000100.pt: torch.save'd dicts, atomic, newest `keep` kept, each
                       holding the run's identity (run id, config.toml text); beside each,
                       step-00000100.pt.sha256: the SHA-256 of its bytes (sha256sum format)
      .lock            writer lock (fcntl.flock) holding the writer's pid

metrics.sqlite:

| table   | column  | type                  | meaning                                         |
|---------|---------|-----------------------|-------------------------------------------------|
| scalars | step    | INTEGER NOT NULL, key | optimizer step the value belongs to (>= 0)      |
| scalars | name    | TEXT NOT NULL, key    | metric name                                     |
| scalars | value   | REAL                  | the value; NULL = missing (None or NaN logged)  |
| vectors | step    | INTEGER NOT NULL, key | optimizer step                                  |
| vectors | name    | TEXT NOT NULL, key    | metric name (e.g. a line curve on a grid)       |
| vectors | dtype   | TEXT NOT NULL         | "float32" or "float64"                          |
| vectors | length  | INTEGER NOT NULL      | number of elements                              |
| vectors | value   | BLOB NOT NULL         | little-endian elements; NaN allowed inside      |
| info    | key     | TEXT PRIMARY KEY      | schema_version (1), last_checkpoint_step        |
| info    | value   | TEXT                  | its value                                       |

scalars and vectors are `WITHOUT ROWID` tables keyed by (step, name): rows are written with
`INSERT OR REPLACE`, so logging a (step, name) again (after resuming from a checkpoint)
replaces the row and never duplicates it.

Values: bool -> 0.0/1.0; ints -> REAL (exact below 2**53); None and NaN -> NULL (missing);
+inf and -inf are stored as IEEE infinities, so a diverged loss stays distinguishable
from a missing one. 1-D arrays, tensors, lists go to `vectors`: float32 and float64 are
stored bit-exactly; float16, bfloat16, bool and 8/16-bit ints as float32; wider ints as float64.

Reading: `load(root)` is the one reader of results: every run at or under `root` as
`Results` (runs, steps, vectors, metas, configs in memory; see `sgdwalk.store.results`),
each store opened once, read-only; copies of a run are read once, unfinished runs and
half-made folders are left out, each with a note (`sgdwalk.store.reader`). `read_run(path)`
is one run's scalar table as stored. Underneath, `RunStore.scalars()` is a wide float64
table (index "step", a column per name; NaN = missing) or a long one (step, name, value);
`RunStore.vectors(name)` is a table with index "step" and columns v0..v{K-1} (float32 when
every row was float32). Readers open the file with `mode=ro` and see a consistent committed
prefix while a writer is running.

Writing anything else (claims.json, report.html, figures, sweep.json, exports) goes through
`write_artifact`: atomic, with the fault handling below.

Reliability (each fault is a StoreError with one line; committed rows are never damaged):

| fault                          | what happens                                                |
|--------------------------------|-------------------------------------------------------------|
| folder not writable            | "expected a writable folder to ..., got: Permission denied" |
| disk full on flush             | "... got: the disk is full"; the batch rolls back, earlier  |
|                                | rows stay intact, the batch stays buffered for a retry      |
| disk full on a checkpoint      | "... got: the disk is full" (not torch's "unexpected pos"); |
|                                | temporary file removed, earlier checkpoints intact          |
| metrics.sqlite is not a store  | "expected an sqlite metric store, got ..." on open          |
| a second writer                | RunLockedError "run <path> is being written by another      |
|                                | process (pid N)"; `run_writer(path)` peeks at the holder    |
|                                | (a sweep waits for it: see sgdwalk.studies.execute)         |
| a writer killed mid-write      | its `.NAME.tmp-PID` files are deleted by the next writer;   |
|                                | uncommitted rows are gone, committed ones whole             |
| newest checkpoint damaged      | its SHA-256 differs from its .sha256 file (or that file is  |
|                                | missing): passed over unread for the previous checkpoint,   |
|                                | with a warning; none undamaged: "expected a checkpoint      |
|                                | whose bytes match its checksum, got none that does"         |
| newest checkpoint won't load   | (its checksum matches: a forged or planted file) refused,   |
|                                | nothing in it executed (weights_only=True); no silent       |
|                                | fall-back: the message names the previous checkpoint        |
| a checkpoint of another run    | refused: "expected a checkpoint of this run (run id A), got |
|                                | a checkpoint of run B"                                      |
| checkpoints/ a symbolic link   | refused for saving and loading: a run never rotates (deletes)|
|                                | files outside its own folder                                |
| config.toml edited after start | `check_config` (resume) refuses it, naming the changed keys |
| meta.json damaged or mistyped  | "meta.json: status: expected a string or null, got int 5"   |
| metric rows edited by hand     | "scalars row (step 3, name 'loss'): expected ..., got a     |
|                                | value of type TEXT 'abc'" (also bad vector lengths, dtypes) |
| reader during a write          | a consistent committed prefix; the writer is never blocked  |
| finished run, read-only folder | read as an immutable database                               |
| a maker killed mid-creation    | only a hidden `.RUN_DIR.tmp-PID.RANDOM` folder is left: no  |
|                                | reader finds it, the next maker of that run removes it      |
"""

import importlib

from sgdwalk.store.artifacts import write_artifact
from sgdwalk.store.folders import find_runs, run_meta, run_progress, run_status, run_writer
from sgdwalk.store.manifest import read_manifest, write_manifest
from sgdwalk.store.metrics import SCHEMA_VERSION
from sgdwalk.store.run import RunStore

# The readers build pandas tables, and importing pandas costs about 0.3 s of CPU: they load
# on first use (PEP 562), so `sgdwalk train`, which only writes rows, starts without pandas.
_READERS = {"export_run": "sgdwalk.store.export", "load": "sgdwalk.store.reader",
            "load_vectors": "sgdwalk.store.reader", "read_run": "sgdwalk.store.reader",
            "Results": "sgdwalk.store.results"}


def __getattr__(name: str):
    if name in _READERS:
        return getattr(importlib.import_module(_READERS[name]), name)
    raise AttributeError(f"module 'sgdwalk.store' has no attribute {name!r}")

__all__ = [
    "SCHEMA_VERSION",
    "Results",
    "RunStore",
    "export_run",
    "find_runs",
    "load",
    "load_vectors",
    "read_manifest",
    "read_run",
    "run_meta",
    "run_progress",
    "run_status",
    "run_writer",
    "write_artifact",
    "write_manifest",
]
