"""What each preset costs, as a ratio to a plain SGD step, measured side by side.

    python benchmarks/preset_cost.py [--quick] [--threads N] [--clock cpu|wall]

For each model (batch 128; probe set 512 examples in chunks of 256; plain SGD, lr 0.05):

1. families: one probe family alone, its added time per call as a multiple of a plain SGD
   step (zero_grad, forward, backward, optimizer step) of the same model and batch;
2. presets: a whole training step with the walk at the preset's default schedules, as a
   ratio to a plain SGD step. off, cheap, economy and line run every family on every step
   and are measured directly; curvature is measured directly without its sparse sharpness
   family, then sharpness (every:100) is added amortised, and full adds the barrier and
   gradient-noise families (every:10) amortised from table 1.

Sharpness per call is M probe-set Hessian-vector products (timed side by side with the
step) times M, the products one cold-started Lanczos call needed at the measured step
(tol 1e-3; warm starts need fewer, see sharpness_solvers.py); for full-width VGG-11, M is
taken from the x0.25 network (one cold call there would take minutes). The barrier is
measured with the line probe it needs, and the line's cost subtracted; its ring buffer is
filled first (ks 1, 2, 5, 10).
"""

from __future__ import annotations

import statistics

import torch

from common import (
    Options,
    Runner,
    interleave,
    only,
    per_round,
    script,
    setting,
    show,
    table,
    times,
)
from sgdwalk.config import WalkConfig
from sgdwalk.functional.lanczos import lanczos
from sgdwalk.probes.barrier import Barrier
from sgdwalk.probes.line import Line
from sgdwalk.probes.registry import PRESETS, PROBES

DENSE = ("off", "cheap", "economy", "line")
_MATVECS: dict[str, int] = {}


def _period(family: str) -> int:
    return int(PROBES[family].schedule.split(":")[1])


def measure(key: str, rounds: int, opts: Options, families: bool = True):
    s = setting(key)
    runners = {"sgd": Runner(s)}
    for preset in DENSE:
        runners[preset] = Runner(s, WalkConfig(preset=preset))
    runners["curvature (dense)"] = Runner(s, WalkConfig(preset="curvature", sharpness="off"))
    if families:
        for family in ("trajectory", "economy", "line", "curvature", "noise"):
            runners[f"+{family}"] = Runner(s, only(family))
        runners["+barrier"] = Runner(s, [Line(sources=("probe",)),
                                         Barrier(lambda t: t >= 10, "probe")])
    for name, r in runners.items():  # first calls; the barrier's ring buffer fills up
        for _ in range(11 if name == "+barrier" else 2):
            r.step()
    fns = {n: r.step for n, r in runners.items()}
    if families:
        hvp, matvecs = _sharpness_unit(key, runners["sgd"])
        fns["probe-set HVP"] = hvp
    small = statistics.median(times(runners["sgd"].step, opts)) < 0.01
    t = interleave(fns, rounds, opts.now, repeat=3 if small else 1, warm=1 if small else 0)
    ratios = {n: per_round(t, n, "sgd") for n in runners if n != "sgd"}
    added = {}
    if families:
        for family in ("trajectory", "economy", "line", "curvature", "noise"):
            added[family] = [r - 1 for r in ratios[f"+{family}"]]
        added["barrier"] = per_round(t, "+barrier", "sgd", minus="+line")
        added["sharpness"] = [matvecs * h for h in per_round(t, "probe-set HVP", "sgd")]
    return s, t, ratios, added, (matvecs if families else None)


def _sharpness_unit(key: str, runner: Runner):
    """(one probe-set HVP at the runner's point, M matvecs of a cold Lanczos call there)."""
    from sgdwalk.functional.flat import ParamLayout
    from sgdwalk.losses import cross_entropy
    from sgdwalk.probes.batch import Pairs
    from sgdwalk.probes.evaluator import LossEvaluator
    from sgdwalk.probes.walk import _chunks

    model, data = runner.model, runner.setting.data
    ev = LossEvaluator(model, ParamLayout.of(model))
    chunks = _chunks(Pairs(cross_entropy), (data.probe.x, data.probe.y), 256)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(0))

    def matvec(w):
        return ev.hessian(chunks, theta) @ w

    if key == "vgg11" and "vgg11-x0.25" in _MATVECS:
        matvecs = _MATVECS["vgg11-x0.25"]
    else:
        res = lanczos(matvec, dim=theta.numel(), k=1, tol=1e-3, max_iter=50,
                      generator=torch.Generator().manual_seed(1), dtype=theta.dtype)
        matvecs = _MATVECS[key] = res.n_matvec
    return (lambda: matvec(v)), matvecs


def run(opts: Options) -> None:
    if opts.quick:
        plan = [("mlp", 9, True), ("vgg11-x0.25", 3, False)]
    else:
        plan = [("mlp", 41, True), ("vgg11-x0.25", 9, True), ("resnet20", 5, True),
                ("vgg11", 3, True)]
    preset_rows, family_rows = [], []
    for key, rounds, families in plan:
        s, t, ratios, added, matvecs = measure(key, rounds, opts, families)
        row = [key, f"{s.params:,}", f"{statistics.median(t['sgd']) * 1e3:.1f}"]
        row += [show(ratios[p]) for p in DENSE]
        if families:
            curv = [c + sh / _period("sharpness") for c, sh in
                    zip(ratios["curvature (dense)"], added["sharpness"])]
            full = [c + b / _period("barrier") + n / _period("noise") for c, b, n in
                    zip(curv, added["barrier"], added["noise"])]
            row += [show(curv), show(full)]
            family_rows.append([key] + [show(added[f]) for f in
                                        ("trajectory", "economy", "line", "curvature")]
                               + [f"{show(added['sharpness'], 1)} ({matvecs} HVPs)",
                                  show(added["barrier"], 1), show(added["noise"])])
        else:
            row += [show(ratios["curvature (dense)"]) + " (dense only)", "-"]
        preset_rows.append(row)
    print("\n## Presets: a step with the walk / a plain SGD step (default schedules)\n")
    print(table(["model", "params", "SGD step ms", *PRESETS[:4], "curvature", "full"],
                preset_rows))
    print("\noff..line and curvature's dense part measured; sharpness (every:100), barrier and "
          "noise (every:10) amortised from the family table. Median [IQR] over rounds.")
    if family_rows:
        print("\n## Families: added time per call / a plain SGD step (each alone, every step)\n")
        print(table(["model", "trajectory", "economy", "line", "curvature",
                     "sharpness (cold, per call)", "barrier (per call)", "noise"], family_rows))


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
