"""Study files: the format, reading it, and the one rule by which overrides apply.

A study is a TOML file (the shipped ones live in sgdwalk/configs/studies/)::

    # sgdwalk sweep lr-batch --scale cpu            <- the command that runs it
    # Learning rate x batch size: height, exploration, lr/B (claims C3, C4, C5)
    [study]
    claims = ["C3", "C4", "C5"]     # what the study's runs are meant to decide
    tags = { "optim.lr" = "lr" }    # optional: short names of grid keys in run names

    [base]                          # a run config, exactly as in a run preset
    optim.lr = 0.1
    walk.preset = "economy"

    [grid]                          # dotted keys -> lists; the cartesian product, in order
    optim.lr = [0.05, 0.2]
    train.seed = [1, 2]

    [[variant]]                     # optional: each variant runs the whole grid
    label = "gd"
    axes = ["train.seed"]           # optional: only these grid axes multiply this variant
    optim.algorithm = "gd"          # dotted keys on top of base and the grid point

    [scale.cpu]                     # overrides applied by --scale cpu
    train.epochs = 8
    [scale.paper]
    data.name = "cifar10"

The override rule, the same for a scale table and for `--set KEY=VALUE`:

    KEY = v               every run: base gets v, a grid axis on KEY shrinks to [v], and
                          every variant that sets KEY gets v
    grid.KEY = [...]      one axis: replaces it, or adds it
    variant.LABEL.KEY = v one variant
    study.KEY = v         the study's own fields (name, description, claims, ...)

Within one set of overrides the specific keys (grid., variant.) apply after the plain ones,
so they win; the scale's overrides apply before the `--set` ones, so the command line has
the last word (`--set train.epochs=1` shrinks every run). A variant that sets a grid key is
not multiplied by that axis.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from sgdwalk.config import dotted, parse_toml, read_text_file
from sgdwalk.errors import ConfigError

SECTIONS = ("study", "base", "grid", "variant", "scale")
STUDY_KEYS = ("name", "description", "claims", "experiments", "tags")
# the first part of an override that addresses one part of the study, not every run
ADDRESSED = ("study", "grid", "variant", "base", "scale")
_LABEL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Variant:
    """One [[variant]] table: a label, its dotted overrides, the grid axes it runs over."""

    label: str
    overrides: dict  # dotted key -> value, on top of base and the grid point
    axes: tuple | None  # grid keys that multiply this variant; None: all


@dataclass(frozen=True)
class StudyFile:
    """A study file as written, before a scale or `--set` overrides are applied."""

    source: str  # the preset name or the file path it was read from
    study: dict  # name, description, claims, experiments, tags
    base: dict  # a nested run config table
    grid: dict  # dotted key -> list of values, in file order
    variants: tuple  # of Variant, in file order
    scales: dict  # scale name -> {dotted key: value}, in file order

    @property
    def name(self) -> str:
        return str(self.study["name"])


# ---------------------------------------------------------------------------------------
# names and files


def study_names() -> list[str]:
    """Names of the studies shipped inside the package."""
    folder = resources.files("sgdwalk") / "configs" / "studies"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def study_summary(name: str) -> str:
    """The description line of a shipped study (its second comment line)."""
    return _summary((resources.files("sgdwalk") / "configs" / "studies" / f"{name}.toml")
                    .read_text())


def _summary(text: str) -> str:
    comments = [line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")]
    return comments[1] if len(comments) > 1 else ""


def read_study(source: str | Path) -> StudyFile:
    """Read a shipped study by name, or a study TOML file by path; check its sections.

    The header's description line becomes study.description unless the file sets one.
    Raises ConfigError (one line) on an unknown name, unreadable file or bad section.
    """
    source = str(source)
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"study: expected a study name or a TOML file, got {source!r}")
        text, stem = read_text_file(path, "study"), path.stem
    else:
        resource = resources.files("sgdwalk") / "configs" / "studies" / f"{source}.toml"
        if not resource.is_file():
            raise ConfigError(f"study: expected one of {', '.join(study_names())} or a "
                              f".toml file, got {source!r}")
        text, stem = resource.read_text(), source
    data = parse_toml(text, f"study {source}")
    if isinstance(data.get("study", {}), dict) and _summary(text):
        data.setdefault("study", {}).setdefault("description", _summary(text))
    return _parse(data, stem, source)


# ---------------------------------------------------------------------------------------
# parsing


def _parse(data: dict, default_name: str, source: str) -> StudyFile:
    where = f"study {source}: "
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{where}{key}: expected one of the sections "
                              f"{', '.join(SECTIONS)}, got unknown section")
    study = dict(data.get("study", {}))
    for key in study:
        if key not in STUDY_KEYS:
            raise ConfigError(f"{where}study.{key}: expected one of the keys "
                              f"{', '.join(STUDY_KEYS)}, got unknown key")
    study.setdefault("name", default_name)
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError(f"{where}base: expected a table, got {type(base).__name__}")
    grid = {k: _axis(k, v, f"{where}grid.") for k, v in dotted(data.get("grid", {})).items()}
    scales = {}
    for name, table in data.get("scale", {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}scale.{name}: expected a table, got "
                              f"{type(table).__name__}")
        scales[name] = dotted(table)
    return StudyFile(source, study, copy.deepcopy(base), grid,
                     _variants(data.get("variant", []), grid, where), scales)


def _variants(tables, grid: dict, where: str) -> tuple:
    if not isinstance(tables, list):
        raise ConfigError(f"{where}variant: expected [[variant]] tables, got a single table")
    variants: list[Variant] = []
    for i, table in enumerate(tables):
        table = dict(table)
        label = table.pop("label", None)
        if not isinstance(label, str) or not is_label(label):
            raise ConfigError(f"{where}variant[{i}].label: expected letters, digits, _ or -, "
                              f"got {label!r}")
        if any(v.label == label for v in variants):
            raise ConfigError(f"{where}variant.label: expected distinct labels, got {label!r} "
                              "twice")
        axes = table.pop("axes", None)
        for axis in axes or []:
            if axis not in grid:
                raise ConfigError(f"{where}variant {label}: axes: expected grid keys "
                                  f"({', '.join(grid)}), got {axis!r}")
        variants.append(Variant(label, dotted(table), None if axes is None else tuple(axes)))
    return tuple(variants)


def is_label(text: str) -> bool:
    """Whether `text` may name a study or variant: letters, digits, _ or -."""
    return _LABEL.fullmatch(text) is not None



def _axis(key: str, values, where: str) -> list:
    if not isinstance(values, list):
        values = [values]
    if not values:
        raise ConfigError(f"{where}{key}: expected a non-empty list of values, got []")
    return list(values)


def set_key(tree: dict, key: str, value, where: str) -> None:
    """tree[a][b][c] = value for key "a.b.c", creating tables on the way."""
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}{key}: expected a key inside a table, got a value at "
                              f"{part!r}")
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------------------------------
# the override rule


def with_overrides(doc: StudyFile, items: Iterable[tuple[str, Any]], where: str) -> StudyFile:
    """The study with one set of (dotted key, value) overrides applied, by the rule in the
    module docstring: plain keys reach every run, then grid.KEY, variant.LABEL.KEY and
    study.KEY address one part (so they win). `doc` is left as it was."""
    items = list(items)
    base, grid, study = copy.deepcopy(doc.base), dict(doc.grid), dict(doc.study)
    variants = {v.label: dict(v.overrides) for v in doc.variants}
    for key, value in (kv for kv in items if kv[0].split(".")[0] not in ADDRESSED):
        set_key(base, key, value, where)
        if key in grid:
            grid[key] = [value]
        for overrides in variants.values():
            if key in overrides:
                overrides[key] = value
    for key, value in (kv for kv in items if kv[0].split(".")[0] in ADDRESSED):
        _address(key, value, grid, variants, study, where)
    return replace(doc, study=study, base=base, grid=grid,
                   variants=tuple(replace(v, overrides=variants[v.label])
                                  for v in doc.variants))


def _address(key: str, value, grid: dict, variants: dict, study: dict, where: str) -> None:
    """Apply grid.KEY, variant.LABEL.KEY or study.KEY (in place)."""
    head, _, rest = key.partition(".")
    if not rest:
        raise ConfigError(f"{where}{key}: expected a key inside the section, such as "
                          f"{head}.train.epochs, got the section itself")
    if head == "grid":
        grid[rest] = _axis(rest, value, where + "grid.")
    elif head == "variant":
        label, _, vkey = rest.partition(".")
        if label not in variants or not vkey:
            raise ConfigError(f"{where}{key}: expected variant.LABEL.KEY with a label of "
                              f"{', '.join(variants) or 'none'}, got {label!r}")
        variants[label][vkey] = value
    elif head == "study":
        if rest not in STUDY_KEYS:
            raise ConfigError(f"{where}study.{rest}: expected one of the keys "
                              f"{', '.join(STUDY_KEYS)}, got unknown key")
        study[rest] = value
    else:
        raise ConfigError(f"{where}{key}: expected KEY (every run), grid.KEY or "
                          f"variant.LABEL.KEY, got a {head} key")
