"""The one reader of stored results: `load(root)` reads a run folder or any folder of runs
(a sweep, a reproduction of several sweeps) into `Results`, opening each run once, read-only.

What analysis sees is decided here, and said in `Results.notes`:

- a folder that is not a whole run (left half-made by a maker killed before runs were made
  whole) is skipped;
- a run found twice (a run folder copied into a sweep) is read once: the copy that got
  furthest (finished first, then the most steps);
- an unfinished run (status created, running or stopped) is left out, unless `root` is that
  run itself (then it is read as far as it got);
- a run whose sweep manifest says it failed (it raised) has status "failed".

run_id is meta.json's `run_id` (a hash of the config, written by the trainer), else the
folder's name (its path under `root` where two such names are equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sgdwalk.config import config_from_toml, parse_toml
from sgdwalk.errors import ConfigError, IncompleteRunError, StoreError
from sgdwalk.store.folders import find_runs
from sgdwalk.store.manifest import read_manifest
from sgdwalk.store.results import Results, assemble
from sgdwalk.store.run import CONFIG, META, RunStore

FINISHED = ("completed", "diverged")
UNFINISHED = ("created", "running", "stopped")


@dataclass
class _Stored:
    """One run as read from its folder."""

    path: Path
    name: str  # its folder name, or its path under the root
    meta: dict
    config_text: str
    facts: dict  # its row of Results.runs before the derived columns
    scalars: pd.DataFrame  # run_id, step, metrics
    vectors: dict  # name -> run_id, step, v0..

    @property
    def status(self) -> str | None:
        return self.facts["status"]

    @property
    def updates(self) -> int:
        return int(self.scalars["step"].max()) + 1 if len(self.scalars) else 0


def read_run(path) -> pd.DataFrame:
    """The scalar table of one run as stored: index "step", one float64 column per metric
    name (NaN = missing)."""
    with RunStore.open(path) as run:
        return run.scalars()


def load(root, within=None, include_unfinished: bool = False) -> Results:
    """Every run at or under `root` (a run folder, a study folder, a folder of them) as
    `Results`. Raises StoreError when there is no run to read.

    within: only the runs under these folders of `root` (names or paths; e.g. the study
    folders one reproduction trained, not everything else under its root).
    include_unfinished: read unfinished runs as far as they got (the live view of a
    sweep that is training), each named in a note, instead of leaving them out.
    """
    root = Path(root)
    folders = [root] if within is None else [root / w for w in within]
    stored, skipped = [], []
    for path in sorted({p for folder in folders for p in find_runs(folder)}):
        try:
            stored.append(_read(path, root))
        except IncompleteRunError:
            why = "its metric store has no tables" if (path / META).is_file() else \
                f"it has no {META}"
            skipped.append(f"{_under(path, root)} ({why})")
    notes = [f"skipped folders that are not whole runs: {'; '.join(skipped)}"] if skipped else []
    if not stored:
        why = f" ({notes[0]})" if notes else ""
        raise StoreError(f"{root}: expected a run folder or a folder of runs, got none{why}")
    manifests = {p: read_manifest(p) or {} for p in sorted({s.path.parent for s in stored})}
    _mark_failed(stored, manifests)
    _name_runs(stored)
    stored, copies = _one_per_id(stored)
    stored, unfinished = _finished(stored, root, include_unfinished)
    notes += copies + unfinished
    runs = pd.DataFrame([s.facts for s in stored]).set_index("run_id")
    steps = pd.concat([s.scalars for s in stored], ignore_index=True, sort=False)
    vectors: dict[str, list] = {}
    for s in stored:
        for name, frame in s.vectors.items():
            vectors.setdefault(name, []).append(frame)
    return assemble(runs, steps,
                    {n: pd.concat(f, ignore_index=True) for n, f in vectors.items()},
                    {s.facts["run_id"]: s.meta for s in stored},
                    {s.facts["run_id"]: s.config_text for s in stored},
                    tuple(notes), _study_claims(manifests), root)


def load_vectors(root, name: str) -> pd.DataFrame:
    """The vector metric `name` (e.g. "line_probe") of every run `load(root)` reads:
    columns run_id, step, v0..v{K-1}; runs that never logged it contribute no rows."""
    return load(root).vectors(name)


def _read(path: Path, root: Path) -> _Stored:
    with RunStore.open(path) as run:
        meta, text = run.meta(), run.config_text()
        scalars = run.scalars().reset_index()
        vectors = {n: run.vectors(n).reset_index() for n in run.names()["vectors"]}
    try:  # TOML, nested at most MAX_TOML_DEPTH deep (a deeper file exhausts the recursion)
        config = parse_toml(text, f"run {path}: {CONFIG}")
    except ConfigError as exc:
        raise StoreError(str(exc)) from None
    try:
        config_from_toml(text)  # every value valid, as for a run about to train
    except ConfigError as exc:
        raise StoreError(f"run {path}: {CONFIG}: {exc}") from None
    facts = {"run_id": _text(meta.get("run_id")), "run_dir": str(path),
             "status": _text(meta.get("status")), "study": _text(meta.get("study")),
             "variant": _text(meta.get("variant")), "scale": _text(meta.get("scale")),
             "steps_per_epoch": _number(meta.get("steps_per_epoch"))}
    for key, value in _flatten(config).items():
        facts[key if "." in key else f"config.{key}"] = value
    final = meta.get("final")
    for key, value in (final.items() if isinstance(final, dict) else ()):
        if _number(value) is not None:
            facts[f"final_{key}"] = float(value)
    return _Stored(path, _under(path, root), meta, text, facts, scalars, vectors)


def _mark_failed(stored: list[_Stored], manifests: dict) -> None:
    """status "failed" where a sweep manifest records that the run raised (and its own
    meta.json does not say it finished since)."""
    for s in stored:
        rows = manifests[s.path.parent].get("runs", [])
        failed = any(isinstance(r, dict) and r.get("status") == "failed"
                     and r.get("dir") == s.path.name for r in rows)
        if failed and s.status not in FINISHED:
            s.facts["status"] = "failed"


def _name_runs(stored: list[_Stored]) -> None:
    """Fill in run_id where meta.json has none: the folder name, or its path under the root
    where two such folders share a name (they are different runs as far as anyone knows)."""
    unnamed = [s for s in stored if s.facts["run_id"] is None]
    names = [s.path.name for s in unnamed]
    for s in unnamed:
        s.facts["run_id"] = s.path.name if names.count(s.path.name) == 1 else s.name
    for s in stored:
        for frame in (s.scalars, *s.vectors.values()):
            frame.insert(0, "run_id", s.facts["run_id"])


def _one_per_id(stored: list[_Stored]) -> tuple[list[_Stored], list[str]]:
    """Keep one run per run_id: the copy that finished, then the one with most steps."""
    by_id: dict[str, list[_Stored]] = {}
    for s in stored:
        by_id.setdefault(s.facts["run_id"], []).append(s)
    kept, notes = [], []
    for run_id, copies in by_id.items():
        best = max(copies, key=lambda s: (s.status in (*FINISHED, "failed"), s.updates))
        kept.append(best)
        if len(copies) > 1:
            others = ", ".join(s.name for s in copies if s is not best)
            notes.append(f"run {run_id} found {len(copies)} times: read {best.name}, "
                         f"left out {others}")
    return kept, notes


def _finished(stored: list[_Stored], root: Path,
              include: bool) -> tuple[list[_Stored], list[str]]:
    """Leave out unfinished runs (unless asked, or `root` is the run itself), saying which."""
    unfinished = [s for s in stored if s.status in UNFINISHED]
    if not unfinished:
        return stored, []
    said = ", ".join(f"{s.facts['run_id']} ({_progress(s)})" for s in unfinished)
    if include or (len(stored) == 1 and stored[0].path == root):
        return stored, [f"unfinished, read as far as they got: {said}"]
    kept = [s for s in stored if s.status not in UNFINISHED]
    if not kept:
        raise StoreError(f"{root}: expected a finished run, got only unfinished ones: {said}")
    return kept, [f"left out unfinished runs: {said}"]


def _progress(s: _Stored) -> str:
    total = _number(s.meta.get("total_steps"))
    of = f" of {int(total)}" if total is not None else ""
    return f"{s.status}, {s.updates}{of} steps"


def _study_claims(manifests: dict) -> dict[str, tuple[str, ...]]:
    """Study name -> the claims its sweep.json says the study is meant to decide."""
    out: dict[str, tuple[str, ...]] = {}
    for manifest in manifests.values():
        study, claims = manifest.get("study"), manifest.get("claims")
        if isinstance(study, str) and isinstance(claims, list):
            out[study] = tuple(dict.fromkeys([*out.get(study, ()), *map(str, claims)]))
    return out


def _under(path: Path, root: Path) -> str:
    return path.name if path == root else path.relative_to(root).as_posix()


def _text(value) -> str | None:
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok and value == value else None


def _flatten(table: dict, prefix: str = "") -> dict:
    """Dotted keys ("optim.lr"); lists become tuples so the columns can be grouped on."""
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
