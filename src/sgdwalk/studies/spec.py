"""Study files: a base run config, a grid, variants and scales, expanded into named runs.

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
    optim.algorithm = "gd"          # dotted overrides on top of base and grid point

    [scale.cpu]                     # a patch applied by --scale cpu (see `apply_patch`)
    train.epochs = 8
    [scale.paper]
    data.name = "cifar10"

A patch (a scale table, or the --set overrides applied after it) addresses the study:
`base.K`, `grid.K` (a list: replaces or adds an axis), `variant.LABEL.K`, `study.K`. A
plain key K means `base.K` in a scale table (grid axes and variants that set K keep their
values), and "K everywhere" in a --set: it is set in base, a grid axis on K shrinks to that
one value, and every variant that sets K gets it too (the user's last word, so that
`--set train.epochs=1` shrinks every run). Plain keys are applied before section keys, so
the specific wins. A variant that sets a grid key is not multiplied by that axis. Run
names are "<study>-<variant>-<tag><value>-...".
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from sgdwalk.config import RunConfig, from_dict, parse_override, read_text_file
from sgdwalk.errors import ConfigError

SECTIONS = ("study", "base", "grid", "variant", "scale")
STUDY_KEYS = ("name", "description", "claims", "experiments", "tags")
# short names of common grid keys in run names; any other key uses its last part
TAGS = {"optim.lr": "lr", "optim.batch_size": "b", "train.seed": "s", "optim.momentum": "m",
        "optim.weight_decay": "wd", "optim.noise_batch": "nb", "optim.algorithm": ""}
_LABEL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: its config (with a distinct `name`), variant and grid point."""

    config: RunConfig
    variant: str  # the variant's label; "base" when the study has no variants
    point: dict  # grid key -> value of this run


@dataclass(frozen=True)
class Study:
    """A study expanded at one scale: the runs of a sweep, in a fixed order."""

    name: str
    scale: str
    description: str
    claims: tuple[str, ...]
    entries: tuple[StudyRun, ...]
    source: str  # the preset name or file it came from
    overrides: tuple[str, ...]  # the --set overrides applied

    @property
    def runs(self) -> list[RunConfig]:
        return [e.config for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)


@dataclass
class _Variant:
    label: str
    overrides: dict  # flat dotted key -> value
    axes: list | None  # grid keys that multiply this variant; None: all


@dataclass
class _Document:
    study: dict
    base: dict  # nested, as a run config table
    grid: dict  # flat dotted key -> list of values, in file order
    variants: list  # of _Variant
    scales: dict  # name -> flat patch


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


def _read_study(source: str) -> tuple[str, dict]:
    """(default name, parsed TOML) of a study name or a .toml path; the header's description
    line becomes study.description unless the file sets one."""
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"study: expected a study name or a TOML file, got {source!r}")
        text, stem = read_text_file(path, "study"), path.stem
    else:
        resource = resources.files("sgdwalk") / "configs" / "studies" / f"{source}.toml"
        if not resource.is_file():
            raise ConfigError(
                f"study: expected one of {', '.join(study_names())} or a .toml file, "
                f"got {source!r}"
            )
        text, stem = resource.read_text(), source
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study {source}: expected valid TOML, got {exc}") from None
    if isinstance(data.get("study", {}), dict) and _summary(text):
        data.setdefault("study", {}).setdefault("description", _summary(text))
    return stem, data


# ---------------------------------------------------------------------------------------
# the document


def _flatten(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _set(tree: dict, key: str, value, where: str) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}{key}: expected a key inside a table, got a value at "
                              f"{part!r}")
        node = child
    node[parts[-1]] = value


def _axis(key: str, values, where: str) -> list:
    if not isinstance(values, list):
        values = [values]
    if not values:
        raise ConfigError(f"{where}{key}: expected a non-empty list of values, got []")
    return list(values)


def _parse(data: dict, default_name: str, source: str) -> _Document:
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
    grid = {k: _axis(k, v, f"{where}grid.") for k, v in _flatten(data.get("grid", {})).items()}
    variants = []
    raw_variants = data.get("variant", [])
    if not isinstance(raw_variants, list):
        raise ConfigError(f"{where}variant: expected [[variant]] tables, got a single table")
    for i, table in enumerate(raw_variants):
        table = dict(table)
        label = table.pop("label", None)
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
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
        variants.append(_Variant(label, _flatten(table), axes))
    scales = {}
    for name, patch in data.get("scale", {}).items():
        if not isinstance(patch, dict):
            raise ConfigError(f"{where}scale.{name}: expected a table, got "
                              f"{type(patch).__name__}")
        scales[name] = _flatten(patch)
    return _Document(study, _deep_copy(base), grid, variants, scales)


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def apply_patch(doc: _Document, items: list[tuple[str, Any]], where: str,
                everywhere: bool) -> None:
    """Apply (dotted key, value) pairs to the document in place (rules: module docstring).
    everywhere: plain keys also set grid axes and variants (--set), else only base."""
    general = [(k, v) for k, v in items if k.split(".")[0] not in SECTIONS]
    specific = [(k, v) for k, v in items if k.split(".")[0] in SECTIONS]
    for key, value in general:
        _set(doc.base, key, value, where)
        if not everywhere:
            continue
        if key in doc.grid:
            doc.grid[key] = [value]
        for variant in doc.variants:
            if key in variant.overrides:
                variant.overrides[key] = value
    for key, value in specific:
        head, _, rest = key.partition(".")
        if not rest:
            raise ConfigError(f"{where}{key}: expected a key inside the section, such as "
                              f"{head}.train.epochs, got the section itself")
        if head == "base":
            _set(doc.base, rest, value, where + "base.")
        elif head == "grid":
            doc.grid[rest] = _axis(rest, value, where + "grid.")
        elif head == "study":
            if rest not in STUDY_KEYS:
                raise ConfigError(f"{where}study.{rest}: expected one of the keys "
                                  f"{', '.join(STUDY_KEYS)}, got unknown key")
            doc.study[rest] = value
        elif head == "variant":
            label, _, vkey = rest.partition(".")
            found = [v for v in doc.variants if v.label == label]
            if not found or not vkey:
                labels = ", ".join(v.label for v in doc.variants) or "none"
                raise ConfigError(f"{where}{key}: expected variant.LABEL.KEY with a label "
                                  f"of {labels}, got {label!r}")
            found[0].overrides[vkey] = value
        else:
            raise ConfigError(f"{where}{key}: expected a key outside the scale section, got "
                              "a scale key")


# ---------------------------------------------------------------------------------------
# expansion


def load_study(name_or_path: str, scale: str = "cpu", overrides=()) -> Study:
    """Expand a study preset (or study TOML file) at `scale`, with `--set` overrides.

    Every expanded run config is validated; a bad key or value raises the one-line
    ConfigError of `RunConfig` ("<key>: expected X, got Y"), prefixed with the study and run.
    """
    default_name, data = _read_study(str(name_or_path))
    doc = _parse(data, default_name, str(name_or_path))
    if scale not in doc.scales:
        raise ConfigError(f"study {doc.study['name']}: scale: expected one of "
                          f"{', '.join(doc.scales) or '(none defined)'}, got {scale!r}")
    apply_patch(doc, list(doc.scales[scale].items()), f"study {doc.study['name']} scale "
                f"{scale}: ", everywhere=False)
    sets = [parse_override(text) for text in overrides]
    apply_patch(doc, [(".".join(path), value) for path, value in sets],
                f"study {doc.study['name']} --set ", everywhere=True)
    name = str(doc.study["name"])
    if not _LABEL.fullmatch(name):
        raise ConfigError(f"study.name: expected letters, digits, _ or -, got {name!r}")
    entries = _expand(doc, name)
    claims = doc.study.get("claims", [])
    return Study(name=name, scale=scale, description=str(doc.study.get("description", "")),
                 claims=tuple(claims if isinstance(claims, list) else [claims]),
                 entries=tuple(entries), source=str(name_or_path), overrides=tuple(overrides))


def _expand(doc: _Document, study: str) -> list[StudyRun]:
    tags = {**TAGS, **doc.study.get("tags", {})}
    variants = doc.variants or [_Variant("base", {}, None)]
    entries, seen = [], {}
    for variant in variants:
        axes = [k for k in doc.grid
                if (variant.axes is None or k in variant.axes) and k not in variant.overrides]
        for values in itertools.product(*(doc.grid[k] for k in axes)):
            point = dict(zip(axes, values))
            parts = [study] + ([variant.label] if doc.variants else [])
            parts += [f"{tags.get(k, k.rsplit('.', 1)[-1])}{_fmt(v)}" for k, v in point.items()]
            run_name = "-".join(parts)
            tree = _deep_copy(doc.base)
            where = f"study {study}, run {run_name}: "
            for key, value in [*point.items(), *variant.overrides.items()]:
                _set(tree, key, _deep_copy(value), where)
            tree["name"] = run_name
            try:
                config = from_dict(RunConfig, tree)
            except ConfigError as exc:
                raise ConfigError(f"{where}{exc}") from None
            if run_name in seen:
                raise ConfigError(f"study {study}: expected distinct run names, got "
                                  f"{run_name!r} twice")
            seen[run_name] = True
            entries.append(StudyRun(config, variant.label, point))
    return entries


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt(v) for v in value)
    return str(value)
