"""Sharpness: warm-started Lanczos against L2-normalised power iteration (PyHessian style).

    python benchmarks/sharpness_solvers.py [--quick] [--threads N] [--clock cpu|wall]

Along a real training run (SGD, lr 0.1, batch 128) the top Hessian eigenvalue of the
probe-set loss (512 examples in chunks of 256, BN on batch statistics) is measured at
several checkpoints, 100 steps apart (the default `walk.sharpness` schedule, every:100).
Every solver uses the same matvec, `LossEvaluator.hessian(...).kept() @ v` on the probe set
(what the sharpness probe uses: one backward per product through the gradient's graph, built
once per checkpoint and not counted in the times), and is one of ours (`functional.lanczos`,
`functional.power_iteration`). The reference lambda_max is a long Lanczos run (float64
basis, residual tolerance 1e-6). For each solver:

    to 1e-3   Hessian-vector products until |lambda - ref| / |ref| <= 1e-3 first holds
    at stop   products used by the solver's own stopping rule (Lanczos: residual < 1e-3,
              the probe's default; power iteration: relative change < 1e-3, PyHessian's),
              and the error of the estimate it returned

Lanczos "warm" starts from the previous checkpoint's Ritz vector (as the probe does); power
iteration "cold" starts from a random vector at every checkpoint (PyHessian), "warm" from
the previous checkpoint's vector. Time to 1e-3 is the time of the matvecs used plus the
solver's own arithmetic (measured by replaying the recorded matvecs).

Target (the performance issue): Lanczos needs <= 1/3 of power iteration's products.
"""

from __future__ import annotations

import math
import statistics

import torch

from common import Options, Runner, script, setting, table
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.functional.lanczos import lanczos, power_iteration
from sgdwalk.losses import cross_entropy
from sgdwalk.probes.batch import Pairs
from sgdwalk.probes.walk import _chunks

TOL = 1e-3


class Recorded:
    """A matvec that records its outputs, times and Rayleigh quotients; given a `prefix`
    recording, it returns that one's outputs for the first calls (checked to be the same
    inputs), so a longer run of a deterministic solver costs only its extra products."""

    def __init__(self, matvec, now, prefix: Recorded | None = None):
        self.matvec, self.now, self.prefix = matvec, now, prefix
        self.outputs: list[torch.Tensor] = []
        self.checks: list[tuple[float, float]] = []
        self.times: list[float] = []
        self.rayleigh: list[float] = []

    def __call__(self, v):
        i = len(self.outputs)
        check = (float(v.double().sum()), float(v.double().norm()))
        if self.prefix is not None and i < len(self.prefix.outputs):
            if check != self.prefix.checks[i]:
                raise RuntimeError("sharpness benchmark: a replayed solver took another path")
            w, dt = self.prefix.outputs[i], self.prefix.times[i]
        else:
            t = self.now()
            w = self.matvec(v)
            dt = self.now() - t
        self.times.append(dt)
        self.outputs.append(w.clone())
        self.checks.append(check)
        vv = float(v.double() @ v.double())
        self.rayleigh.append(float(v.double() @ w.double()) / vv)
        return w


class Replay:
    """The recorded outputs in order: a solver that repeats its steps gets the same numbers."""

    def __init__(self, rec: Recorded):
        self.rec, self.i = rec, 0

    def __call__(self, v):
        w = self.rec.outputs[self.i]
        self.i += 1
        return w


def lanczos_to_tol(rec: Recorded, ref: float, v0, gen_state, dim, now):
    """Smallest m whose m-step Lanczos estimate is within TOL of ref (binary search: the top
    Ritz value never decreases with m), and the algebra time of that run."""

    def estimate(m):
        gen = torch.Generator().set_state(gen_state)
        t = now()
        res = lanczos(Replay(rec), dim=dim, k=1, tol=1e-12, max_iter=m, v0=v0, generator=gen,
                      dtype=torch.float32)
        return float(res.eigenvalues[0]), now() - t

    hi = len(rec.outputs)
    if abs(estimate(hi)[0] - ref) > TOL * abs(ref):
        return None, None
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if abs(estimate(mid)[0] - ref) <= TOL * abs(ref):
            hi = mid
        else:
            lo = mid + 1
    return hi, estimate(hi)[1]


def first_within(values, ref):
    for i, lam in enumerate(values):
        if abs(lam - ref) <= TOL * abs(ref):
            return i + 1
    return None


def probe_hessian(key: str):
    """(setting, SGD runner at lr 0.1, layout, evaluator, probe-set chunks of 256) of a
    benchmark model: what each solver's Hessian-vector products are taken on."""
    from sgdwalk.probes.evaluator import LossEvaluator

    s = setting(key)
    runner = Runner(s, None, lr=0.1)
    layout = ParamLayout.of(runner.model)
    ev = LossEvaluator(runner.model, layout)
    chunks = _chunks(Pairs(cross_entropy), (s.data.probe.x, s.data.probe.y), 256)
    return s, runner, layout, ev, chunks


def run_model(key: str, checkpoints: int, power_max: int, cold_lanczos: bool, opts: Options):
    s, runner, layout, ev, chunks = probe_hessian(key)
    dim = layout.numel
    gen = torch.Generator().manual_seed(0)
    prev_lanczos = prev_power = None
    rows, counts = [], {}
    for c in range(checkpoints):
        if c:
            for _ in range(100):
                runner.step()
        theta = torch.cat([p.detach().reshape(-1) for p in runner.model.parameters()])

        op = ev.hessian(chunks, theta).kept()  # as the probe: one backward per product

        def matvec(v, op=op):
            return op @ v

        ref_res = lanczos(matvec, dim=dim, k=1, tol=1e-5, max_iter=200, generator=gen,
                          dtype=torch.float64)
        ref = float(ref_res.eigenvalues[0])
        # Lanczos as the probe runs it: warm start, float32 basis, stop at residual 1e-3 ...
        state = gen.get_state()
        rec = Recorded(matvec, opts.now)
        t = opts.now()
        own = lanczos(rec, dim=dim, k=1, tol=TOL, max_iter=50, v0=prev_lanczos, generator=gen,
                      dtype=torch.float32)
        own_time = opts.now() - t
        # ... then on to 60 products, to find where it first came within 1e-3
        more = Recorded(matvec, opts.now, prefix=rec)
        lanczos(more, dim=dim, k=1, tol=1e-12, max_iter=max(60, own.n_matvec), v0=prev_lanczos,
                generator=torch.Generator().set_state(state), dtype=torch.float32)
        m_lz, algebra = lanczos_to_tol(more, ref, prev_lanczos, state, dim, opts.now)
        lz_time = sum(more.times[:m_lz]) + algebra if m_lz else math.nan
        prev_lanczos = own.eigenvectors.clone()
        out = {"lanczos warm": (m_lz, lz_time, own.n_matvec,
                                abs(float(own.eigenvalues[0]) - ref) / abs(ref), own_time)}
        if cold_lanczos and c:  # what the warm start saves
            state = gen.get_state()
            rec = Recorded(matvec, opts.now)
            lanczos(rec, dim=dim, k=1, tol=1e-12, max_iter=60, generator=gen,
                    dtype=torch.float32)
            m, algebra = lanczos_to_tol(rec, ref, None, state, dim, opts.now)
            out["lanczos cold"] = (m, sum(rec.times[:m]) + algebra if m else math.nan, 0,
                                   math.nan, math.nan)
        # power iteration, cold (random start, PyHessian) and warm (previous vector)
        warm_start = prev_power
        for name, v0 in (("power cold", None), ("power warm", warm_start)):
            if v0 is None:
                v0 = torch.randn(dim, generator=gen)
            rec = Recorded(matvec, opts.now)
            t = opts.now()
            pi = power_iteration(rec, v0, tol=0.0, max_iter=power_max)
            m_pi = first_within(rec.rayleigh, ref)
            # its own stopping rule, read off the same sequence of Rayleigh quotients
            stop = next((i + 1 for i in range(1, len(rec.rayleigh))
                         if abs(rec.rayleigh[i] - rec.rayleigh[i - 1])
                         < TOL * abs(rec.rayleigh[i])), len(rec.rayleigh))
            per_step = (opts.now() - t) / len(rec.times)
            overhead = per_step - statistics.mean(rec.times)
            pi_time = sum(rec.times[:m_pi]) + overhead * m_pi if m_pi else math.nan
            out[name] = (m_pi, pi_time, stop, abs(rec.rayleigh[stop - 1] - ref) / abs(ref),
                         per_step * stop)
            if name == "power warm":
                prev_power = pi.eigenvector.clone()
        op.close()
        step = c * 100
        for name, (m, secs, stop, err, _) in out.items():
            counts.setdefault(name, []).append((m, secs))
            rows.append([key, str(step), f"{ref:.4g}", name + (" (= cold)" if not c and "warm"
                                                                in name else ""),
                         str(m) if m else f">{60 if name.startswith('lanczos') else power_max}",
                         f"{secs:.2f}" if m else "-", str(stop) if stop else "-",
                         f"{err:.1e}" if stop else "-"])
    return rows, counts


def run(opts: Options) -> None:
    plan = ([("mlp", 3, 120, True)] if opts.quick
            else [("mlp", 6, 300, True), ("vgg11-x0.25", 3, 100, False)])
    rows, summary = [], []
    for key, checkpoints, power_max, cold in plan:
        r, counts = run_model(key, checkpoints, power_max, cold, opts)
        rows += r
        for base in ("power cold", "power warm"):
            both = [(a, b) for a, b in zip(counts["lanczos warm"], counts[base])]
            pairs = [(a, b) for a, b in both if a[0] and b[0]]
            if not pairs:
                summary.append([key, base, "-", "-", "-", str(len(both))])
                continue
            ratio = [a[0] / b[0] for a, b in pairs]
            total = sum(a[0] for a, _ in pairs) / sum(b[0] for _, b in pairs)
            ttotal = sum(a[1] for a, _ in pairs) / sum(b[1] for _, b in pairs)
            summary.append([key, base, f"{statistics.median(ratio):.2f} "
                            f"[{min(ratio):.2f}-{max(ratio):.2f}]", f"{total:.2f}",
                            f"{ttotal:.2f}", str(len(both) - len(pairs))])
    print("\n## Sharpness: products (HVPs) to reach 1e-3 relative accuracy on lambda_max\n")
    print(table(["model", "step", "lambda_max (ref)", "solver", "HVPs to 1e-3",
                 "seconds to 1e-3", "HVPs at own stop", "error at own stop"], rows))
    print()
    print(table(["model", "Lanczos warm vs", "HVP ratio per checkpoint, median [min-max]",
                 "HVP ratio, all checkpoints", "time ratio, all checkpoints",
                 "checkpoints not resolved"], summary))
    print("\nTarget: Lanczos <= 1/3 of power iteration's products (ratio <= 0.33).")


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
