"""A study at one scale, with `--set` overrides, expanded into the runs of a sweep.

    study = load_study("lr-batch", scale="cpu", overrides=["train.epochs=2"])
    study.runs        # [RunConfig, ...], each with a distinct name
    study.entries     # [StudyRun, ...]: the config plus what a sweep records with it

Runs are expanded variant by variant (file order), then over the grid (axes in file order,
values in list order). A run's name is "<study>-<variant>-<tag><value>-...", e.g.
`lr-batch-lr0.1-b32-s1`; names must be distinct. Every run config is checked before
anything runs: as a `RunConfig` ("<key>: expected X, got Y"), and its `data.name` and
`model.name` against the dataset and model registries, so a typo is one line that names
the study and the run, not a sweep of failed runs.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sgdwalk.config import RunConfig, from_dict, parse_override
from sgdwalk.errors import ConfigError
from sgdwalk.studies.spec import (
    StudyFile,
    Variant,
    is_label,
    read_study,
    set_key,
    with_overrides,
)

# short names of common grid keys in run names; any other key uses its last part
TAGS = {"optim.lr": "lr", "optim.batch_size": "b", "train.seed": "s", "optim.momentum": "m",
        "optim.weight_decay": "wd", "optim.noise_batch": "nb", "optim.algorithm": ""}


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: its config (with a distinct `name`) and where it sits in the
    study. `meta` is what the sweep stores in the run's meta.json and sweep.json."""

    config: RunConfig
    study: str
    scale: str
    variant: str  # the variant's label; "base" when the study has no variants
    point: dict  # grid key -> value of this run (its seed, where seeds are an axis)

    @property
    def seed(self) -> int:
        return self.config.train.seed

    @property
    def meta(self) -> dict:
        return {"study": self.study, "variant": self.variant, "scale": self.scale,
                "point": dict(self.point)}


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


def load_study(name_or_path: str | Path, scale: str = "cpu",
               overrides: Sequence[str] = ()) -> Study:
    """Read a shipped study (by name) or a study TOML file and expand it (see `expand`)."""
    return expand(read_study(name_or_path), scale, overrides)


def expand(doc: StudyFile, scale: str = "cpu", overrides: Sequence[str] = ()) -> Study:
    """The runs of `doc` at `scale`, with `--set KEY=VALUE` overrides, every one checked.

    The scale table's overrides apply first, then `overrides`, each by the one rule of
    `sgdwalk.studies.spec`. Raises a one-line ConfigError ("study S, run R: optim.lr:
    expected ...") on a bad key, value, dataset or model name.
    """
    if scale not in doc.scales:
        raise ConfigError(f"study {doc.name}: scale: expected one of "
                          f"{', '.join(doc.scales) or '(none defined)'}, got {scale!r}")
    doc = with_overrides(doc, doc.scales[scale].items(), f"study {doc.name} scale {scale}: ")
    sets = [parse_override(text) for text in overrides]
    doc = with_overrides(doc, [(".".join(path), value) for path, value in sets],
                         f"study {doc.name} --set ")
    if not is_label(doc.name):
        raise ConfigError(f"study.name: expected letters, digits, _ or -, got {doc.name!r}")
    claims = doc.study.get("claims", [])
    return Study(name=doc.name, scale=scale, description=str(doc.study.get("description", "")),
                 claims=tuple(claims if isinstance(claims, list) else [claims]),
                 entries=tuple(_runs(doc, scale)), source=doc.source,
                 overrides=tuple(overrides))


def _runs(doc: StudyFile, scale: str) -> Iterator[StudyRun]:
    tags = {**TAGS, **doc.study.get("tags", {})}
    seen = set()
    for variant in doc.variants or (Variant("base", {}, None),):
        # a variant that sets a grid key fixes it: that axis does not multiply the variant
        axes = [k for k in doc.grid
                if (variant.axes is None or k in variant.axes) and k not in variant.overrides]
        for values in itertools.product(*(doc.grid[k] for k in axes)):
            point = dict(zip(axes, values))
            parts = [doc.name] + ([variant.label] if doc.variants else [])
            parts += [f"{tags.get(k, k.rsplit('.', 1)[-1])}{_fmt(v)}" for k, v in point.items()]
            name = "-".join(parts)
            config = _config(doc, name, point, variant)
            if name in seen:
                raise ConfigError(f"study {doc.name}: expected distinct run names, got "
                                  f"{name!r} twice")
            seen.add(name)
            yield StudyRun(config, doc.name, scale, variant.label, point)


def _config(doc: StudyFile, name: str, point: dict, variant: Variant) -> RunConfig:
    """base < grid point < variant, validated as a RunConfig and against the registries."""
    tree = copy.deepcopy(doc.base)
    where = f"study {doc.name}, run {name}: "
    for key, value in [*point.items(), *variant.overrides.items()]:
        set_key(tree, key, copy.deepcopy(value), where)
    tree["name"] = name
    try:
        config = from_dict(RunConfig, tree)
        _check_registered(config)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return config


def _check_registered(config: RunConfig) -> None:
    """data.name and model.name name a registered dataset and model (else every run would
    fail once it starts)."""
    from sgdwalk.data.registry import dataset_loader
    from sgdwalk.models.registry import model_builder

    dataset_loader(config.data.name)
    model_builder(config.model.name)


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt(v) for v in value)
    return str(value)
