"""Training code never imports the probes: the walk reaches the loop only as StepHooks."""

import ast
import subprocess
import sys
from pathlib import Path

import sgdwalk.train

TRAIN = Path(sgdwalk.train.__file__).parent
FORBIDDEN = ("sgdwalk.probes", "sgdwalk.experiment")  # the layers above training


def _imported(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_training_module_names_the_probes():
    files = sorted(TRAIN.glob("*.py"))
    assert {"loop.py", "transforms.py", "noise.py"} <= {f.name for f in files}
    for path in files:
        bad = [m for m in _imported(path) if m.startswith(FORBIDDEN)]
        assert not bad, f"{path.name} imports {bad}"


IMPORT_ALL = """
import importlib, pkgutil, sys
import sgdwalk.config  # reads the probe registrations (names and settings) to build WalkConfig
before = set(sys.modules)
import sgdwalk.train
for info in pkgutil.iter_modules(sgdwalk.train.__path__):
    importlib.import_module(f"sgdwalk.train.{info.name}")
print(sorted(m for m in set(sys.modules) - before if m.startswith(FORBIDDEN)))
""".replace("FORBIDDEN", repr(FORBIDDEN))


def test_importing_all_of_training_loads_no_probe_module_beyond_the_configs():
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"
