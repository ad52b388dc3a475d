"""Lanczos: products to 1e-3 of lambda_max by start vector, against cold power iteration.

    python benchmarks/lanczos_starts.py [--quick] [--threads N] [--clock cpu|wall]

Along the sharpness benchmark's run (SGD lr 0.1, batch 128, checkpoints 100 steps apart,
512 probe examples in chunks of 256, products through `Hessian.kept()`), at each checkpoint:
lambda_1 and lambda_2 (Lanczos, float64 basis, residual 1e-5), the asymptotic bound on
Lanczos' share of power iteration's products for r = lambda_2 / lambda_1 (docs/performance.md,
section 5), and the products each start needs to come within 1e-3 of lambda_1:

    random      a random unit vector
    gradient    the probe-set gradient at theta_t (free: the kept graph computes it)
    warm        the previous checkpoint's Ritz vector (what the sharpness probe does)
    warm + gradient, warm + 0.3 gradient     block starts: their sum
    power, cold PyHessian's power iteration from a random vector
"""

from __future__ import annotations

import math

import torch

from common import Options, script, table
from sgdwalk.functional.lanczos import lanczos, power_iteration
from sharpness_solvers import Recorded, first_within, lanczos_to_tol, probe_hessian


def bound(r: float) -> float:
    """Asymptotic Lanczos / power iteration products for lambda_2 / lambda_1 = r, rest >= 0."""
    x = 1 + 2 * (1 - r) / r
    return math.log(1 / r) / math.log(x + math.sqrt(x * x - 1))


def run_model(key: str, checkpoints: int, lz_max: int, pw_max: int, opts: Options):
    s, runner, layout, ev, chunks = probe_hessian(key)
    dim = layout.numel
    gen = torch.Generator().manual_seed(0)
    prev, rows = None, []
    for c in range(checkpoints):
        if c:
            for _ in range(100):
                runner.step()
        theta = torch.cat([p.detach().reshape(-1) for p in runner.model.parameters()])
        with ev.hessian(chunks, theta).kept() as op:
            g = op.gradient / torch.linalg.vector_norm(op.gradient)
            top = lanczos(lambda v: op @ v, dim=dim, k=2, tol=1e-5, max_iter=120,
                          generator=gen, dtype=torch.float64)
            ref, r = float(top.eigenvalues[0]), float(top.eigenvalues[1] / top.eigenvalues[0])
            starts = {"random": None, "gradient": g[None]}
            if prev is not None:
                starts.update({"warm": prev, "warm + gradient": torch.stack([prev[0], g]),
                               "warm + 0.3 gradient": torch.stack([prev[0], 0.3 * g])})
            counts = {}
            for name, v0 in starts.items():
                state = gen.get_state()
                rec = Recorded(lambda v: op @ v, opts.now)
                lanczos(rec, dim=dim, k=1, tol=1e-12, max_iter=lz_max, v0=v0, generator=gen,
                        dtype=torch.float32)
                counts[name] = lanczos_to_tol(rec, ref, v0, state, dim, opts.now)[0]
            prev = lanczos(lambda v: op @ v, dim=dim, k=1, tol=1e-3, max_iter=50, v0=prev,
                           generator=gen, dtype=torch.float32).eigenvectors.clone()
            rec = Recorded(lambda v: op @ v, opts.now)
            power_iteration(rec, torch.randn(dim, generator=gen), tol=0.0, max_iter=pw_max)
            counts["power, cold"] = first_within(rec.rayleigh, ref)
        cells = [str(counts[n]) if counts.get(n) else ("-" if n not in counts else f">{lz_max}")
                 for n in ("random", "gradient", "warm", "warm + gradient",
                           "warm + 0.3 gradient")]
        pw = counts["power, cold"]
        rows.append([key, str(c * 100), f"{ref:.4g}", f"{r:.3f}",
                     f"{bound(r):.2f}" if 0 < r < 1 else "-", *cells,
                     str(pw) if pw else f">{pw_max}"])
    return rows


def run(opts: Options) -> None:
    plan = [("mlp", 2, 16, 60)] if opts.quick else [("mlp", 3, 20, 120),
                                                      ("vgg11-x0.25", 3, 16, 30)]
    rows = [row for key, n, lz, pw in plan for row in run_model(key, n, lz, pw, opts)]
    print("\n## Lanczos: products to 1e-3 of lambda_max by start vector\n")
    print(table(["model", "step", "lambda_1", "lambda_2 / lambda_1", "asymptotic bound",
                 "random", "gradient", "warm", "warm + gradient", "warm + 0.3 gradient",
                 "power, cold"], rows))
    print("\nasymptotic bound: Lanczos' share of power iteration's products as the error "
          "vanishes (Chebyshev rate against r^2, the rest of the spectrum in [0, lambda_2]).")


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
