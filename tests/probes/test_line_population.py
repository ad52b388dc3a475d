"""The line probe's eps with the finite-population correction (docs/claims.md, rule 1).

Full-batch GD on an exact least-squares quadratic (float64, 40 examples): the probe set is
the whole objective, so the floor's depth is exact, and only round-off is noise.
"""

import math

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError
from sgdwalk.experiment import train
from sgdwalk.probes.line import Line
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk
from sgdwalk.store import RunStore, read_run


def gd_line(kit, population, sources=("probe",), lr_kappa=1.5):
    """One GD step at lr x kappa = lr_kappa; the line values of step 0 and the walk."""
    problem = kit.make_least_squares()
    w0 = torch.zeros(problem.X.shape[1], dtype=torch.float64)
    g = problem.grad(w0)
    lr = lr_kappa * float(g @ g) / float(g @ problem.H @ g)
    model = problem.model(w0)
    probes = build_probes(WalkConfig(preset="line", line_sources=sources,
                                     line_population=population))
    walk = Walk(model, probes, loss_fn=kit.half_squared_error,
                probe_set=(problem.X, problem.y), probe_batch=1000)
    kit.gd_step(problem, walk, model, lr)
    return dict(walk.rows)[0], dict(walk.rows).get(-1, {}), problem


def test_an_exact_dip_smaller_than_the_sampling_eps_is_interior_when_the_set_is_all_data(kit):
    old, _, _ = gd_line(kit, None)  # no population: eps as for a sample of an infinite one
    new, header, problem = gd_line(kit, 40)  # the 40 examples are the whole objective
    depth = min(old["line_probe_height"], old["line_probe_height_end"])
    assert old["line_probe_floor_a"] == pytest.approx(1 / 1.5, rel=1e-9)
    assert old["line_probe_eps"] > depth and old["line_probe_interior"] == 0.0
    # corrected: no sampling noise, only the round-off floor of float64 losses
    assert new["line_probe_eps"] < 1e-12 < depth and new["line_probe_interior"] == 1.0
    assert header["line_population"] == 40.0
    for key in ("line_probe_floor_a", "line_probe_height", "line_probe_convex"):
        assert new[key] == old[key]  # only eps and what compares with it change


def test_a_sample_of_a_larger_population_is_corrected_by_sqrt_n_minus_n(kit):
    old, _, _ = gd_line(kit, None)
    new, _, _ = gd_line(kit, 100)
    assert new["line_probe_eps"] == pytest.approx(
        old["line_probe_eps"] * math.sqrt((100 - 40) / (100 - 1)), rel=1e-12)


def test_a_full_batch_is_the_whole_objective_without_a_population(kit):
    v, header, _ = gd_line(kit, None, sources=("batch", "probe"))
    assert v["line_batch_eps"] < 1e-12 < v["line_probe_eps"]
    assert "line_population" not in header  # nothing known to record


def test_a_population_smaller_than_the_probe_set_is_refused(kit):
    with pytest.raises(ValueError, match="expected a population of at least the 40"):
        gd_line(kit, 39)
    with pytest.raises(ConfigError, match=r"^walk.line_population: expected >= 1 or none, "
                       r"got 0$"):
        WalkConfig(line_population=0)
    with pytest.raises(ValueError, match="expected a positive population"):
        Line(population=2.5)


def test_the_trainer_records_its_training_split_as_the_population(tiny_config, tmp_path):
    result = train(tiny_config(**{"walk.preset": "line", "train.epochs": 1}), tmp_path)
    with RunStore.open(result.run_dir) as store:
        n_train = store.meta()["sizes"]["train"]
    table = read_run(result.run_dir)
    assert n_train > 64 and table.loc[-1, "line_population"] == n_train
    # the probe set (64 of the n_train) is a sample: eps is corrected, not zero
    assert (table["line_probe_eps"].dropna() > 1e-6).all()
