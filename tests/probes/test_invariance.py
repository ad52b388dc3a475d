"""Observing must not change what is observed, and probes do not influence each other.

Bit-identical parameters, BatchNorm running statistics and losses with and without every
probe on every step (torch.equal, no tolerance), with BN and with dropout; each probe family
alone gives exactly the values it gives with all the others.
"""

import math

import pytest
import torch

from sgdwalk.config import WalkConfig, replace
from sgdwalk.experiment import train
from sgdwalk.models.mlp import MLP
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.registry import registered
from sgdwalk.store import RunStore, read_run

# the probes of the presets (precond_sharpness, Adam's only, has its own in
# test_precond_sharpness.py)
FAMILIES = tuple(spec.name for spec in registered() if spec.preset is not None)
EVERYTHING = {
    "walk.preset": "full",
    "walk.sharpness": "every:1",
    "walk.noise": "every:1",
    "walk.line_sources": '["probe", "batch", "heldout"]',
    "walk.economy_jvp": "true",
    "walk.sharpness_k": 2,
    "walk.sharpness_max_iter": 8,
}


def _walk_config(families, **extra) -> WalkConfig:
    spec = {f: ("every:1" if f in families else "off") for f in FAMILIES}
    return WalkConfig(preset="off", line_sources=("probe", "batch", "heldout"),
                      economy_jvp=True, sharpness_k=2, sharpness_max_iter=8,
                      barrier_ks=(1, 2), **spec, **extra)


@pytest.mark.parametrize("policy", ["batch", "recalibrate"])
def test_trainer_trajectory_is_bit_identical_with_every_probe(tiny_config, tmp_path, policy):
    base = tiny_config(**{"train.epochs": 1, "walk.preset": "off"})
    full = tiny_config(**{"train.epochs": 1, "walk.bn_policy": policy, **EVERYTHING})
    runs = [train(cfg, tmp_path / name) for name, cfg in (("off", base), ("full", full))]
    tables = [read_run(r.run_dir) for r in runs]
    assert "line_probe_floor_a" in tables[1] and "line_probe_floor_a" not in tables[0]
    assert tables[0]["loss"].equals(tables[1]["loss"])
    states = []
    for r in runs:
        with RunStore.open(r.run_dir) as store:
            states.append(store.latest_checkpoint()[1]["model"])
    assert states[0].keys() == states[1].keys()
    assert any("running_mean" in k for k in states[0])
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_manual_loop_with_dropout_and_bn_is_bit_identical(kit):
    walk_kwargs = {"probes": build_probes(_walk_config(FAMILIES))}
    plain, plain_losses, _ = kit.manual_run(kit.DropoutNet, None, steps=6)
    probed, probed_losses, walk = kit.manual_run(kit.DropoutNet, walk_kwargs, steps=6)
    assert torch.equal(plain_losses, probed_losses)
    for (k, a), (_, b) in zip(plain.state_dict().items(), probed.state_dict().items()):
        assert torch.equal(a, b), k
    assert {"barrier_floor_k1", "sharp_lambda_max", "noise_trace"} <= set(walk.rows[-1][1])


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("alone", [("trajectory",), ("economy",), ("line",), ("curvature",),
                                   ("sharpness",), ("line", "barrier"), ("noise",)])
def test_each_family_alone_gives_the_values_it_gives_with_all(kit, alone):
    def make():
        return MLP(64, (16,), 10, True)

    _, _, together = kit.manual_run(make, {"probes": build_probes(_walk_config(FAMILIES))},
                                    steps=5)
    _, _, single = kit.manual_run(make, {"probes": build_probes(_walk_config(alone))},
                                  steps=5)
    all_rows, one_rows = dict(together.rows), dict(single.rows)
    assert set(one_rows) <= set(all_rows) and set(one_rows) >= set(range(5))
    for step, values in one_rows.items():
        assert values, step
        for name, value in values.items():
            assert _same(value, all_rows[step][name]), (step, name)


def test_economy_jvp_and_other_policies_leave_training_alone(kit):
    for policy in ("eval", "recalibrate"):
        cfg = replace(_walk_config(("economy", "line", "curvature")), bn_policy=policy)
        kwargs = {"probes": build_probes(cfg), "bn_policy": policy}
        plain, losses, _ = kit.manual_run(kit.DropoutNet, None, steps=4)
        probed, probed_losses, _ = kit.manual_run(kit.DropoutNet, kwargs, steps=4)
        assert torch.equal(losses, probed_losses)
        assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                     probed.state_dict().values()))
