"""Scaling: memory and storage as a run grows, probe cost as K, model and probe set grow.

    python benchmarks/scaling.py [--quick] [--threads N] [--clock cpu|wall]

1. Run length: `sgdwalk.experiment.train` (the real trainer and run store) on the digits MLP
   with the `line` preset, for 1k, 2k, 5k and 10k steps (--quick: 100 and 300), each in a fresh
   subprocess that reports its peak resident memory (VmHWM of /proc/self/status; torch's
   allocations are not visible to tracemalloc) and the run folder's bytes. Fitted linear
   in the number of steps: bytes per step (metrics.sqlite), the checkpoints' bytes (keep 2),
   and peak memory per 1k steps (flat: ~0).
2. Line probe time against K (grid points), parameters (MLP widths) and probe-set size,
   each timed side by side for one step (the line on the probe set, `Line.observe`), with
   the fitted line t = c0 + c1 x (c0: the fixed cost per step) or, for parameters, the
   log-log slope (1: linear in the model size).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import (
    Options,
    Runner,
    interleave,
    parser,
    setting,
    start,
    table,
)
from sgdwalk.config import DataConfig, ModelConfig
from sgdwalk.functional.curve import make_grid
from sgdwalk.probes.base import Probe
from sgdwalk.probes.line import Line

# -- 1. run length, in subprocesses ----------------------------------------------------------

def child(steps: int, out: str, threads: int) -> None:
    """Train `steps` steps and print {peak_rss, metrics, checkpoints} as JSON."""
    torch.set_num_threads(threads)
    from sgdwalk.config import load_config
    from sgdwalk.experiment import train

    cfg = load_config(None, [f"train.max_steps={steps}", "train.epochs=100000",
                             "train.progress=false", "walk.preset=line", "name=scaling",
                             "train.eval_every=100000", "data.name=digits"])
    result = train(cfg, out, progress=False)
    run = Path(result.run_dir)
    metrics = sum(f.stat().st_size for f in run.glob("metrics.sqlite*"))
    ckpt = sum(f.stat().st_size for f in (run / "checkpoints").glob("*"))
    print(json.dumps({"steps": result.steps, "peak_rss": _vm_hwm(), "metrics": metrics,
                      "checkpoints": ckpt}))


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_length(opts: Options) -> None:
    sizes = (100, 300) if opts.quick else (1000, 2000, 5000, 10000)
    rows, got = [], []
    with tempfile.TemporaryDirectory(prefix="sgdwalk-scaling-") as tmp:
        for n in sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(n), tmp,
                                  "--threads", str(opts.threads)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            got.append(r)
            rows.append([f"{r['steps']:,}", f"{r['peak_rss'] / 2**20:.0f}",
                         f"{r['metrics'] / 1e6:.2f}", f"{r['metrics'] / r['steps']:,.0f}",
                         f"{r['checkpoints'] / 1e3:.0f}"])
    steps = np.array([r["steps"] for r in got], dtype=float)
    fits = [_fit(steps, np.array([r[k] for r in got], dtype=float)) for k in
            ("metrics", "checkpoints", "peak_rss")]
    print("\n## Run length: the digits MLP, `line` preset, the real trainer and store\n")
    print(table(["steps", "peak RSS MiB", "metrics.sqlite MB", "metrics bytes/step",
                 "checkpoints kB"], rows))
    (m1, m0, mr2), (c1, c0, _), (r1, r0, _) = fits
    print(f"\nfits over steps: metrics.sqlite = {m0 / 1e3:.0f} kB + {m1:,.0f} B/step "
          f"(R^2 {mr2:.4f}); checkpoints = {c0 / 1e3:.0f} kB + {c1:.1f} B/step (flat: "
          f"keep 2); peak RSS = {r0 / 2**20:.0f} MiB + {r1 * 1000 / 2**20:.2f} MiB per 1k "
          f"steps.")


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares y = c0 + c1 x: (c1, c0, R^2)."""
    c1, c0 = np.polyfit(x, y, 1)
    res = y - (c0 + c1 * x)
    tot = ((y - y.mean()) ** 2).sum()
    return float(c1), float(c0), float(1 - (res ** 2).sum() / tot) if tot > 0 else 1.0


# -- 2. probe cost against K, parameters, probe-set size --------------------------------------

class Capture(Probe):
    name = "capture"

    def observe(self, ctx):
        self.ctx = ctx
        return {}


def _context(s, probe_size=None):
    cap = Capture()
    r = Runner(s, [cap], probe_size=probe_size)
    r.step()
    return r, cap.ctx


def line_costs(opts: Options) -> None:
    rounds = 5 if opts.quick else 15
    rows = []
    # K, on the MLP and the x0.25 VGG
    for key in ("mlp",) if opts.quick else ("mlp", "vgg11-x0.25"):
        runner, ctx = _context(setting(key))
        Ks = (5, 9, 13, 25) if opts.quick else (5, 9, 13, 25, 49)
        lines = {k: Line(grid=make_grid(-0.25, 1.25, k), sources=("probe",)) for k in Ks}
        t = interleave({k: (lambda ln=ln, c=ctx: ln.observe(c)) for k, ln in lines.items()},
                       rounds if key == "mlp" else 3, opts.now)
        x = np.array([len(lines[k].points) for k in Ks], dtype=float)
        y = np.array([np.median(t[k]) for k in Ks])
        c1, c0, r2 = _fit(x, y)
        rows.append([f"K (grid points), {key}", ", ".join(f"{int(v)}" for v in x),
                     ", ".join(f"{v * 1e3:.1f}" for v in y),
                     f"{c1 * 1e3:.3f} ms/point + {c0 * 1e3:.2f} ms fixed (R^2 {r2:.4f})"])
    # parameters: MLP widths on digits
    widths = ((64, 32), (128, 64), (256, 128), (512, 256)) if opts.quick else (
        (64, 32), (128, 64), (256, 128), (512, 256), (1024, 512), (2048, 1024))
    ctxs, params = {}, []
    for w in widths:
        s = setting(f"mlp-{w[0]}", model_cfg=ModelConfig(name="mlp", widths=w),
                    data_cfg=DataConfig(name="digits"))
        ctxs[w] = _context(s)[1]
        params.append(s.params)
    line = Line(sources=("probe",))
    t = interleave({w: (lambda c=c: line.observe(c)) for w, c in ctxs.items()}, rounds,
                   opts.now)
    y = np.array([np.median(t[w]) for w in widths])
    slope = np.polyfit(np.log(params), np.log(y), 1)[0]
    rows.append(["parameters (MLP widths)", ", ".join(f"{p:,}" for p in params),
                 ", ".join(f"{v * 1e3:.1f}" for v in y),
                 f"log-log slope {slope:.2f} (last 3 points: "
                 f"{np.polyfit(np.log(params[-3:]), np.log(y[-3:]), 1)[0]:.2f})"])
    # probe-set size, on synthetic 64-feature data with enough training examples
    data = DataConfig(name="synthetic", synthetic_shape=(64,), synthetic_n=6000,
                      synthetic_classes=10)
    s = setting("mlp-synthetic", model_cfg=ModelConfig(name="mlp"), data_cfg=data)
    sizes = (128, 256, 512, 1024) if opts.quick else (128, 256, 512, 1024, 2048, 4096)
    ctxs = {n: _context(s, probe_size=n) for n in sizes}
    t = interleave({n: (lambda c=c[1]: line.observe(c)) for n, c in ctxs.items()}, rounds,
                   opts.now)
    y = np.array([np.median(t[n]) for n in sizes])
    c1, c0, r2 = _fit(np.array(sizes, dtype=float), y)
    rows.append(["probe-set size (chunks of 256)", ", ".join(str(n) for n in sizes),
                 ", ".join(f"{v * 1e3:.1f}" for v in y),
                 f"{c1 * 1e6:.2f} us/example + {c0 * 1e3:.2f} ms fixed (R^2 {r2:.4f})"])
    print("\n## Line probe cost (probe source, one step) as things grow\n")
    print(table(["grows", "x", "line ms", "fit"], rows))


def run(opts: Options) -> None:
    run_length(opts)
    line_costs(opts)


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--child", nargs=2, metavar=("STEPS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.child[1], args.threads)
        return
    run(start(args))


if __name__ == "__main__":
    main()
