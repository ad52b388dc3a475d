"""Economy mode: the valley floor and height of every step from one forward, and its error.

    python benchmarks/economy_cost.py [--quick] [--threads N] [--clock cpu|wall]

1. Cost, side by side with a plain SGD step (batch 128): the economy probe alone (floor and
   height: f(0) and f'(0) are free, f(1) costs one probing forward at theta_{t+1}), the
   same with f'(1) by forward-mode AD (`economy_jvp`), and the `economy` preset (economy +
   trajectory). Beside them, the floor: one no-grad forward of the batch as a fraction of
   the step, written plainly (torch.no_grad), under torch.inference_mode, with
   channels_last inputs, and as the probe runs it (`LossEvaluator.losses`). No economy
   step can cost less than 1 + (its forward / step).
2. Error against the full curve: along a training run (SGD, lr 0.1), the economy floor and
   height against the line probe on the same batch (13 points, -0.25..1.25, parabola
   refinement), as medians over steps; "in eps" divides by the line's measured noise eps.

Target (the performance issue): economy <= 1.35 x a plain SGD step.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch

from common import (
    Options,
    Runner,
    interleave,
    only,
    per_round,
    plain_forward,
    script,
    setting,
    show,
    table,
    times,
)
from sgdwalk.config import WalkConfig
from sgdwalk.functional.curve import make_grid
from sgdwalk.probes.economy import Economy
from sgdwalk.probes.line import Line


def cost_rows(key: str, rounds: int, opts: Options):
    s = setting(key)
    runners = {"sgd": Runner(s), "economy": Runner(s, only("economy")),
               "economy jvp": Runner(s, only("economy", economy_jvp=True)),
               "preset": Runner(s, WalkConfig(preset="economy"))}
    for r in runners.values():
        r.step()
        r.step()
    sgd = runners["sgd"]
    x, _ = sgd.batch()
    twin, fwd = plain_forward(sgd.model)
    cl = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
    ev = runners["economy"].walk.evaluator
    theta = torch.cat([p.detach().reshape(-1) for p in runners["economy"].model.parameters()])
    batch = [sgd.batch()]

    def inference():
        with torch.inference_mode():
            twin(x)

    fns = {**{n: r.step for n, r in runners.items()}, "fwd no_grad": lambda: fwd(x),
           "fwd inference_mode": inference, "fwd channels_last": lambda: fwd(cl),
           "fwd probe": lambda: ev.losses(batch, theta)}
    small = statistics.median(times(sgd.step, opts)) < 0.01
    t = interleave(fns, rounds, opts.now, repeat=3 if small else 1, warm=1 if small else 0)
    probe_fwd = per_round(t, "fwd probe", "sgd")
    return [key, f"{statistics.median(t['sgd']) * 1e3:.1f}",
            show(per_round(t, "fwd no_grad", "sgd")),
            show(per_round(t, "fwd inference_mode", "sgd")),
            show(per_round(t, "fwd channels_last", "sgd")), show(probe_fwd),
            show([1 + f for f in probe_fwd]), show(per_round(t, "economy", "sgd")),
            show(per_round(t, "economy jvp", "sgd")), show(per_round(t, "preset", "sgd"))]


def error_rows(key: str, steps: int):
    """Economy (quadratic and cubic) against the batch line along a training run."""
    s = setting(key)
    grid = make_grid(-0.25, 1.25, 13)
    rows = []
    for jvp in (False, True):
        runner = Runner(s, [Economy(jvp=jvp), Line(grid=grid, sources=("batch",))], lr=0.1)
        runner.keep_rows = True
        for _ in range(steps):
            runner.step()
        vals = [v for step, v in runner.walk.rows if step >= 0]
        # floors strictly inside the grid: at an edge both fits clip to the same bracket end
        inner = [v for v in vals if grid[0] < v["line_batch_floor_a"] < grid[-1]]
        da = [abs(v["econ_floor_a"] - v["line_batch_floor_a"]) for v in inner]
        dh = [abs(v["econ_height"] - v["line_batch_height"]) for v in vals]
        h = [abs(v["line_batch_height"]) for v in vals]
        eps = [v["line_batch_eps"] for v in vals]
        rel = [d / x for d, x in zip(dh, h) if x > 0]
        in_eps = [d / e for d, e in zip(dh, eps) if e > 0]
        inside = [(0 < v["line_batch_floor_a"] < 1) == (0 < v["econ_floor_a"] < 1)
                  for v in vals]
        agree = float(np.mean(inside)) if vals else math.nan
        rows.append([key, "cubic (jvp)" if jvp else "quadratic", f"{len(vals)} ({len(inner)})",
                     f"{statistics.median(h):.2e}",
                     f"{statistics.median(da):.3f}" if da else "-",
                     f"{statistics.median(dh):.2e}", f"{statistics.median(rel):.3f}",
                     f"{statistics.median(in_eps):.2e}", f"{agree:.2f}"])
    return rows


def run(opts: Options) -> None:
    if opts.quick:
        cost_plan, error_plan = [("mlp", 15), ("vgg11-x0.25", 3)], [("mlp", 60)]
    else:
        cost_plan = [("mlp", 41), ("vgg11-x0.25", 9), ("resnet20", 7), ("vgg11", 3)]
        error_plan = [("mlp", 300), ("vgg11-x0.25", 100)]
    rows = [cost_rows(key, rounds, opts) for key, rounds in cost_plan]
    print("\n## Economy: cost as a ratio to a plain SGD step (batch 128)\n")
    print(table(["model", "SGD step ms", "fwd no_grad", "fwd inference_mode",
                 "fwd channels_last", "fwd as probed", "floor 1 + fwd", "economy",
                 "economy + jvp", "economy preset"], rows))
    print("\nfwd: one no-grad forward of the batch / step (BN on batch statistics). economy: "
          "the probe alone; preset: economy + trajectory. Target <= 1.35.")
    rows = []
    for key, steps in error_plan:
        rows += error_rows(key, steps)
    print("\n## Economy vs the full line on the same batch (SGD lr 0.1, median over steps)\n")
    print(table(["model", "fit", "steps (floor inside the grid)", "line height",
                 "a* abs. diff (floor inside)", "height abs. diff",
                 "relative height error", "height error / eps", "floor in (0,1) agrees"], rows))


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()

