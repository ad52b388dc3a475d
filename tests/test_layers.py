"""The layers only point one way (docs/architecture.md): each package's imports, read from
its source (imports inside functions included), stay within what its layer may use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sgdwalk"

# layer -> the parts of sgdwalk it must never import (docs/architecture.md, "Layers")
FORBIDDEN = {
    "functional": {"*"},  # pure math: nothing of the package but itself
    "models": {"probes", "train", "store", "studies", "analysis", "plots", "experiment",
               "integrations", "cli", "data"},
    "data": {"probes", "train", "store", "studies", "analysis", "plots", "experiment",
             "integrations", "cli", "models"},
    "probes": {"train", "store", "studies", "analysis", "plots", "experiment", "cli", "data",
               "models"},
    "train": {"probes", "studies", "analysis", "plots", "experiment", "integrations", "cli"},
    "store": {"probes", "train", "studies", "analysis", "plots", "experiment", "integrations",
              "cli", "functional", "models", "data"},
    # studies/reproduce.py is the whole job: sweep, then claims and report
    "studies": {"probes", "train", "integrations", "cli"},
    # analysis reads the store's Results type and writes claims.json through its artefact
    # writer; it never computes on tensors
    "analysis": {"probes", "train", "studies", "plots", "experiment", "integrations", "cli",
                 "functional", "models", "data"},
    "plots": {"probes", "train", "studies", "experiment", "integrations", "cli", "functional",
              "models", "data"},
    "integrations": {"train", "store", "studies", "analysis", "plots", "experiment", "cli"},
}
# third-party modules a layer must never import
NO_TORCH = {"analysis", "plots"}


def _modules(layer: str) -> list[Path]:
    path = SRC / layer
    return sorted(path.rglob("*.py")) if path.is_dir() else [SRC / f"{layer}.py"]


def _imports(file: Path) -> set[str]:
    """Every module name `file` imports, relative imports resolved to sgdwalk.*."""
    tree = ast.parse(file.read_text())
    package = ".".join(("sgdwalk", *file.relative_to(SRC).with_suffix("").parts[:-1]))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            else:
                names.add(node.module)
    return names


def _part(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "sgdwalk" and len(parts) > 1 else None


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer):
    bad = []
    for file in _modules(layer):
        for name in _imports(file):
            part = _part(name)
            if part is None or part == layer:
                continue
            if "*" in FORBIDDEN[layer] or part in FORBIDDEN[layer]:
                bad.append(f"{file.relative_to(SRC)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", sorted(NO_TORCH))
def test_analysis_and_plots_never_import_torch(layer):
    bad = [f"{f.relative_to(SRC)} imports {n}" for f in _modules(layer) for n in _imports(f)
           if n.split(".")[0] == "torch"]
    assert not bad, "\n".join(bad)


def test_the_rules_name_every_package():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - {"configs"} <= set(FORBIDDEN), packages - set(FORBIDDEN)
