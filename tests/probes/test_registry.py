"""The probe registry: the built-in registrations give the presets and WalkConfig they gave
by hand before; a probe registered from this file alone runs in its preset, after the probes
it requires, whatever order it was listed in; a missing requirement or a cycle is a one-line
error; `import sgdwalk.config` reads every registration without importing torch."""

import dataclasses
import math
import subprocess
import sys

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError
from sgdwalk.models.mlp import MLP
from sgdwalk.probes import registry
from sgdwalk.probes.barrier import Barrier
from sgdwalk.probes.base import Probe
from sgdwalk.probes.line import Line
from sgdwalk.probes.presets import build_probes, family_schedules
from sgdwalk.probes.registry import register_probe, registered
from sgdwalk.probes.walk import Walk

# The table presets.py held by hand before the registry: (first preset, default schedule),
# in the order probes of a preset run (and are keyed in checkpoints).
BUILT_IN = {
    "trajectory": ("cheap", "every:1"),
    "economy": ("economy", "every:1"),
    "line": ("line", "every:1"),
    "curvature": ("curvature", "every:1"),
    "sharpness": ("curvature", "every:100"),
    "barrier": ("full", "every:10"),
    "noise": ("full", "every:10"),
    "precond_sharpness": (None, "every:100"),  # in no preset: Adam/AdamW only
}
# The walk.* keys existing configs use.
WALK_KEYS = {
    "preset", "bn_policy", "probe_autocast", *BUILT_IN, "line_min", "line_max", "line_points",
    "line_sources",
    "line_population",
    "economy_jvp", "economy_reach", "economy_lr_peak",
    "sharpness_k", "sharpness_tol", "sharpness_max_iter", "barrier_ks",
    "barrier_points", "noise_microbatches", "precond_k", "precond_tol", "precond_max_iter",
}


@pytest.fixture
def own_registry(monkeypatch):
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(registry, "PROBES", dict(registry.PROBES))


def _mlp():
    return MLP(64, (16,), 10, True)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def test_built_in_registrations_keep_the_presets():
    assert {s.name: (s.preset, s.schedule) for s in registered()} == BUILT_IN
    assert [s.name for s in registered()] == list(BUILT_IN)
    assert family_schedules(WalkConfig(preset="line")) == {
        "trajectory": "every:1", "economy": "every:1", "line": "every:1", "curvature": "off",
        "sharpness": "off", "barrier": "off", "noise": "off", "precond_sharpness": "off"}
    assert [p.name for p in build_probes("full")] == [
        name for name, (preset, _) in BUILT_IN.items() if preset is not None]
    assert build_probes("off") == []
    assert registry.PROBES["barrier"].requires == ("line",) == Barrier.requires


def test_walk_config_keys_are_the_probes_settings():
    keys = [f.name for f in dataclasses.fields(WalkConfig)]
    assert set(keys) == WALK_KEYS and len(keys) == len(WALK_KEYS)
    walk = WalkConfig()
    for spec in registered():
        assert getattr(walk, spec.name) is None  # the preset decides
        for f in dataclasses.fields(spec.settings) if spec.settings else ():
            assert getattr(walk, f.name) == f.default, f.name
    # a probe's own settings dataclass validates its keys, with config.py's messages
    with pytest.raises(ConfigError, match=r"^walk.line_points: expected >= 3, got 2$"):
        WalkConfig(line_points=2)
    with pytest.raises(ConfigError, match=r"^walk.sharpness_k: expected an integer > 0"):
        WalkConfig(sharpness_k=0)


def test_config_reads_the_registry_without_importing_torch():
    code = "import sys, sgdwalk.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def _register_floor_gap():
    @register_probe("floor_gap", preset="line", requires=("line",),
                    summary="the batch loss above the probe-set floor")
    class FloorGap(Probe):
        def observe(self, ctx):
            return {"floor_gap": ctx.loss - ctx.results["line_probe_floor_loss"]}

    return FloorGap


def test_a_probe_registered_in_a_test_runs_in_its_preset_after_line(kit, own_registry):
    FloorGap = _register_floor_gap()
    # by name it sorts before line within the preset: the walk must reorder it
    assert [s.name for s in registered()][:4] == ["trajectory", "economy", "floor_gap", "line"]
    _, losses, walk = kit.manual_run(_mlp, {"probes": "line"}, steps=4)
    assert [p.name for p in walk.probes] == ["trajectory", "economy", "line", "floor_gap"]
    assert isinstance(walk.probes[-1], FloorGap)
    rows = dict(walk.rows)
    for t in range(4):
        gap = float(losses[t]) - rows[t]["line_probe_floor_loss"]
        assert rows[t]["floor_gap"] == gap and gap > 0


def test_probes_given_in_any_order_run_after_what_they_require(kit, own_registry):
    FloorGap = _register_floor_gap()
    given = [FloorGap(), Barrier(ks=(1, 2), points=5), Line()]
    _, _, walk = kit.manual_run(_mlp, {"probes": given}, steps=5)
    assert [p.name for p in walk.probes] == ["line", "floor_gap", "barrier"]
    _, _, ordered = kit.manual_run(
        _mlp, {"probes": [Line(), FloorGap(), Barrier(ks=(1, 2), points=5)]}, steps=5)
    assert dict(walk.rows).keys() == dict(ordered.rows).keys()
    for (step, values), (_, expected) in zip(walk.rows, ordered.rows):
        assert values.keys() == expected.keys(), step
        for name, value in values.items():
            assert _same(value, expected[name]), (step, name)
    assert {"barrier_floor_k1", "barrier_iter_k2", "floor_gap"} <= set(walk.rows[-1][1])


def test_a_missing_requirement_or_a_cycle_is_one_line(kit, own_registry):
    FloorGap = _register_floor_gap()
    model = _mlp()
    for alone in (Barrier(), FloorGap()):
        with pytest.raises(ConfigError) as err:
            Walk(model, [Probe(), alone])
        assert "requires 'line'" in str(err.value) and "\n" not in str(err.value)

    @register_probe("first", requires=("second",))
    class First(Probe):
        pass

    @register_probe("second", requires=("first",))
    class Second(Probe):
        pass

    with pytest.raises(ConfigError, match="cycle") as err:
        Walk(model, [Line(), First(), Second()])
    assert "\n" not in str(err.value)


def test_registration_mistakes_are_refused(own_registry):
    with pytest.raises(ValueError, match="already registered"):
        register_probe("line")(type("Again", (Probe,), {}))
    with pytest.raises(ValueError, match="expected a preset"):
        register_probe("cheapest", preset="free")
