"""The line probe against its floor: K plain no-grad forwards of the same data.

    python benchmarks/line_floor.py [--quick] [--threads N] [--clock cpu|wall]

For one step of each model, the full K-point line probe (`Line.observe`: the K forwards, the
loss, the curve summary and the paired noise) on a source is timed against K no-grad forwards
of the same chunks by a plain copy of the model (BN on batch statistics, not tracking, as
the probe's "batch" policy). Two floors are measured: the plain forward as written
(contiguous inputs) and the fastest plain forward we know for the model (channels_last
inputs for conv nets on CPU). The probe source is the fixed probe set (512 examples in
chunks of 256); the batch source is the step's own mini-batch of 128.

"one step" calls the probe on one step context again and again: every point is measured.
"in a run" is the added time per step of a training run with the line probe on every
step (a walk with that probe only, minus a plain SGD step, both timed in the same rounds):
there a = 0 on the probe set is the previous step's a = 1 (the same point and data), so a
step measures K - 1 points; this time also holds the walk's own per-step work.

Target (the performance issue): line / floor <= 1.10.
"""

from __future__ import annotations

import torch

from common import (
    Options,
    Runner,
    interleave,
    per_round,
    plain_forward,
    script,
    setting,
    show,
    table,
)
from sgdwalk.probes.base import Probe
from sgdwalk.probes.line import Line


class Capture(Probe):
    name = "capture"

    def observe(self, ctx):
        self.ctx = ctx
        return {}


def step_context(s):
    """A real StepContext after one training step of a fresh copy of the setting's model."""
    capture = Capture()
    runner = Runner(s, [capture])
    runner.step()
    return runner, capture.ctx


def measure(s, opts: Options, rounds: int, sources=("probe", "batch")):
    runner, ctx = step_context(s)
    ev = runner.walk.evaluator
    _, plain = plain_forward(runner.model)
    conv = ctx.batch[0][0].dim() == 4
    out = []
    for source in sources:
        line = Line(sources=(source,))
        chunks = ev.sources["probe"] if source == "probe" else ctx.batch
        cl = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in chunks]
        K = len(line.points)

        def floor(chunks=chunks, K=K):
            for _ in range(K):
                for x, _ in chunks:
                    plain(x)

        def floor_cl(cl=cl, K=K):
            for _ in range(K):
                for x, _ in cl:
                    plain(x)

        fns = {"line": lambda line=line: line.observe(ctx), "floor": floor}
        if conv:
            fns["floor_cl"] = floor_cl
        if source == "probe":
            plain_run, line_run = Runner(s), Runner(s, [Line(sources=("probe",))])
            fns["sgd step"], fns["line step"] = plain_run.step, line_run.step
        for f in fns.values():
            f()
        small = s.key == "mlp"  # sub-millisecond: time each after itself, several calls
        t = interleave(fns, rounds, opts.now, repeat=3 if small else 1, warm=1 if small else 0)
        best = [min(a, b) for a, b in zip(t["floor"], t.get("floor_cl", t["floor"]))]
        t["best"] = best
        n = sum(len(y) for _, y in chunks)
        over = [a - b for a, b in zip(t["line"], t["floor"])]
        in_run = (show(per_round(t, "line step", "best", minus="sgd step"))
                  if "line step" in t else "-")
        out.append([s.key, f"{source} ({K} x {n})", f"{_med(t['floor']) * 1e3:.2f}",
                    f"{_med(best) * 1e3:.2f}", f"{_med(t['line']) * 1e3:.2f}",
                    show(per_round(t, "line", "floor")), show(per_round(t, "line", "best")),
                    f"{_med(over) * 1e3:+.2f}", in_run])
    return out


def _med(v):
    import statistics

    return statistics.median(v)


def run(opts: Options) -> None:
    plan = [("mlp", 15, ("probe", "batch")), ("vgg11-x0.25", 3, ("batch",))] if opts.quick else [
        ("mlp", 41, ("probe", "batch")), ("vgg11-x0.25", 9, ("probe", "batch")),
        ("resnet20", 5, ("probe", "batch")), ("vgg11", 3, ("probe", "batch"))]
    rows = []
    for key, rounds, sources in plan:
        rows += measure(setting(key), opts, rounds, sources)
    print("\n## Line probe vs its floor (K plain no-grad forwards of the same chunks)\n")
    print(table(["model", "source (K x N)", "floor ms", "best floor ms", "line ms (one step)",
                 "line / floor", "line / best floor", "line - floor ms",
                 "line in a run / best floor"], rows))
    print("\nfloor: plain model, contiguous inputs; best floor: the faster of contiguous and "
          "channels_last inputs. Ratios: median [IQR] of per-round ratios. Target <= 1.10.")


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
