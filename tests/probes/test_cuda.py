"""The walk on a CUDA device gives the values it gives on the CPU (skipped without one).

Everything in float64, so the two devices differ by the order of float sums only: a float64
MLP with BatchNorm, SGD with momentum and weight decay, every dense probe family plus the
curvature along the step and the sharpness, 6 steps through `Walk.step`; then one run of
the project's trainer on the device."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from sgdwalk.config import WalkConfig
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _walk_rows(model, data, device) -> list[tuple[int, dict]]:
    model = copy.deepcopy(model).to(device)
    x, y, px, py = (t.to(device) for t in data)
    probes = build_probes(WalkConfig(preset="full", sharpness="every:3", barrier="off",
                                     noise="off"))
    walk = Walk(model, probes, probe_set=(px, py), probe_batch=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for i in range(6):
        walk.step(opt, x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
    return walk.rows


def test_walk_on_cuda_equals_the_walk_on_cpu():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16),
                                torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    gen = torch.Generator().manual_seed(1)
    data = (torch.randn(96, 8, generator=gen, dtype=torch.float64),
            torch.randint(0, 3, (96,), generator=gen),
            torch.randn(64, 8, generator=gen, dtype=torch.float64),
            torch.randint(0, 3, (64,), generator=gen))
    cpu, gpu = _walk_rows(model, data, "cpu"), _walk_rows(model, data, "cuda")
    assert [s for s, _ in gpu] == [s for s, _ in cpu]
    compared, off = 0, []
    for (step, a), (_, b) in zip(cpu, gpu):
        assert a.keys() == b.keys()
        # the walk's generator is on the CPU for every device, so Lanczos starts alike on
        # both: with the same number of products its eigenpairs agree to round-off; a
        # residual that crosses the tolerance on one device only stops it a product
        # earlier, and then they agree to the tolerance (1e-3)
        same_solve = a.get("sharp_matvecs") == b.get("sharp_matvecs")
        for key, va in a.items():
            va, vb = (torch.as_tensor(v, dtype=torch.float64).cpu() for v in (va, b[key]))
            solved = key.startswith(("sharp_", "align_"))
            rtol = 1e-3 if solved and not same_solve else 1e-7
            finite = torch.isfinite(va)
            if not (torch.equal(finite, torch.isfinite(vb))
                    and torch.allclose(va[finite], vb[finite], rtol=rtol, atol=1e-10)):
                off.append((step, key, va.tolist(), vb.tolist()))
            compared += int(finite.sum())
    assert not off, off[:5]
    assert compared > 200  # not vacuous: every family's values were compared
    assert any(k.startswith("curv_") for _, row in gpu for k in row)
    assert any(k.startswith("sharp") for _, row in gpu for k in row)


def test_trainer_runs_on_cuda(tiny_config, tmp_path):
    from sgdwalk.experiment import train
    from sgdwalk.store import read_run

    cfg = tiny_config(**{"train.device": "cuda", "walk.preset": "curvature"})
    result = train(cfg, tmp_path)
    assert result.status == "completed"
    table = read_run(result.run_dir)
    losses = table["loss"].dropna()
    assert len(losses) > 0 and all(math.isfinite(v) for v in losses)
    assert table["curv_kappa"].notna().any()
