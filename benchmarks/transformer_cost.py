"""The walk on a GPT trained by AdamW: what the probes cost and what memory they add.

    python benchmarks/transformer_cost.py [--quick] [--threads N] [--clock cpu|wall]

The CPU GPT preset size (4 layers, 4 heads, width 128, block 64, vocabulary 113: 816,000
parameters) on random token sequences, batch 32, AdamW (lr 3e-4, wd 0.1), fused attention in
training. Interleaved rounds in one process, medians [IQR] of per-round ratios:

1. the economy probe's step (a walk with only `economy`) / a plain AdamW step, its floor
   (1 + one no-grad forward of the batch / the step: f(1) needs that forward), and the
   `economy` preset (economy + trajectory);
2. the line probe (`Line.observe` on one step context, K = 13 points) / K plain no-grad
   forwards of the same chunks by an eval-mode copy of the model (its floor), on the probe
   set (64 sequences in chunks of 32) and on the step's batch;
3. the curvature probe's step (one Hessian-vector product through math attention) / an
   AdamW step;
4. the memory the walk adds, in bytes per parameter: its flat buffers (theta_t,
   theta_{t+1}, g_t, u_t and the evaluator's scratch vector), then the state of each
   preset's probes (tensors of P entries or more they hold after two steps);
5. bf16 autocast of the line probe against float32: the largest differences of floor loss,
   height and floor position along a run, the line's noise eps, and the time ratio, on the
   GPT and on the digits MLP.

Targets (issue 17): economy <= 1.35 x an AdamW step; line <= 1.10 x its floor.
`--quick`: a 1-layer width-32 GPT, block 16, batch 8, few rounds (the CI smoke test).
"""

from __future__ import annotations

import copy
import statistics

import torch

from common import Options, interleave, per_round, script, setting, show, table
from common import Runner as MLPRunner
from sgdwalk.config import WalkConfig
from sgdwalk.losses import sequence_cross_entropy
from sgdwalk.models import GPT
from sgdwalk.probes.base import Probe
from sgdwalk.probes.line import Line
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk

VOCAB = 113
FULL = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch": 32, "probe": 64}
QUICK = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16, "batch": 8, "probe": 16}


def tokens(n: int, t: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, VOCAB, (n, t), generator=gen),
            torch.randint(0, VOCAB, (n, t), generator=gen))


class Runner:
    """A GPT copy with AdamW and optionally a walk, stepping through fixed batches."""

    def __init__(self, model, size, probes=None, **walk_kwargs):
        self.model = copy.deepcopy(model).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=3e-4, weight_decay=0.1)
        self.batches = [tokens(size["batch"], size["block_size"], seed) for seed in range(4)]
        self.i = 0
        self.walk = None
        if probes is not None:
            x, y = tokens(size["probe"], size["block_size"], 100)
            self.walk = Walk(self.model, probes, loss_fn=sequence_cross_entropy,
                             probe_set=(x, y), probe_batch=size["probe"] // 2, **walk_kwargs)

    def step(self) -> dict:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.opt.zero_grad(set_to_none=True)
        loss = sequence_cross_entropy(self.model(x), y).mean()
        loss.backward()
        if self.walk is not None:
            self.walk.before_step(loss.detach(), (x, y))
        self.opt.step()
        values = {}
        if self.walk is not None:
            values = self.walk.after_step(self.opt)
            self.walk.rows.clear()
        return values


class Capture(Probe):
    name = "capture"

    def observe(self, ctx):
        self.ctx = ctx
        return {}


def only(name: str) -> list[Probe]:
    return build_probes(WalkConfig(preset="off", **{name: "every:1"}))


def economy_rows(model, size, rounds, opts):
    """The economy step against an AdamW step, and its floor: the step plus one no-grad
    forward of the batch (the probe's f(1)) by a plain eval-mode copy."""
    plain, econ = Runner(model, size), Runner(model, size, only("economy"))
    preset = Runner(model, size, build_probes(WalkConfig(preset="economy")))
    for r in (plain, econ, preset):
        r.step()
    twin = copy.deepcopy(model).eval()
    x = plain.batches[0][0]

    def forward():
        with torch.no_grad():
            twin(x)

    t = interleave({"adamw": plain.step, "economy": econ.step, "fwd": forward,
                    "preset": preset.step}, rounds, opts.now)
    floor = [1 + f for f in per_round(t, "fwd", "adamw")]
    return [["economy step / AdamW step", f"{min(t['adamw']) * 1e3:.1f} ms AdamW",
             show(per_round(t, "economy", "adamw")), "<= 1.35"],
            ["its floor: (AdamW step + 1 no-grad forward) / AdamW step", "-", show(floor), "-"],
            ["preset economy (+ trajectory) / AdamW step", "-",
             show(per_round(t, "preset", "adamw")), "-"]]


def hvp_rows(model, size, rounds, opts):
    """The curvature probe's step (one Hessian-vector product of the batch loss, attention
    on the math backend) against an AdamW step."""
    plain, curv = Runner(model, size), Runner(model, size, only("curvature"))
    for r in (plain, curv):
        r.step()
    t = interleave({"adamw": plain.step, "curvature": curv.step}, rounds, opts.now)
    return [["curvature step (1 HVP, math attention) / AdamW step", "-",
             show(per_round(t, "curvature", "adamw")), "-"]]


def line_rows(model, size, rounds, opts):
    capture = Capture()
    runner = Runner(model, size, [capture])
    runner.step()
    ctx, ev = capture.ctx, runner.walk.evaluator
    twin = copy.deepcopy(runner.model).eval()
    rows = []
    for source in ("probe", "batch"):
        line = Line(sources=(source,))
        chunks = ev.sources["probe"] if source == "probe" else ctx.batch
        k = len(line.points)

        def floor(chunks=chunks, k=k):
            with torch.no_grad():
                for _ in range(k):
                    for x, _ in chunks:
                        twin(x)

        fns = {"line": lambda line=line: line.observe(ctx), "floor": floor}
        for f in fns.values():
            f()
        t = interleave(fns, rounds, opts.now)
        n = sum(len(y) for _, y in chunks)
        rows.append([f"line / floor, {source} ({k} x {n} seq.)",
                     f"{min(t['floor']) * 1e3:.1f} ms floor", show(per_round(t, "line", "floor")),
                     "<= 1.10"])
    return rows


def bytes_per_param(holders, p: int, exclude: set[int]) -> float:
    """Bytes of the tensors of >= p entries in the attributes of `holders` (and in their
    dicts, lists and tuples), each storage once, per parameter; `exclude`: storages not to
    count (the trained model's parameters)."""
    seen: dict[int, int] = {}
    for holder in holders:
        for value in vars(holder).values():
            inner = (value.values() if isinstance(value, dict) else
                     value if isinstance(value, (list, tuple)) else [value])
            for t in inner:
                if isinstance(t, torch.Tensor) and t.numel() >= p:
                    ptr = t.untyped_storage().data_ptr()
                    if ptr not in exclude:
                        seen[ptr] = t.untyped_storage().nbytes()
    return sum(seen.values()) / p


def memory_rows(model, size):
    """The walk's flat buffers, then each preset's probe state, in bytes per parameter."""
    rows = []
    for preset in ("cheap", "economy", "line", "curvature"):
        cheap_lanczos = {"sharpness": "every:1", "sharpness_max_iter": 3} if (
            preset == "curvature") else {}
        runner = Runner(model, size, build_probes(WalkConfig(preset=preset, **cheap_lanczos)))
        runner.step()
        runner.step()
        walk, p = runner.walk, runner.walk.layout.numel
        own = {q.untyped_storage().data_ptr() for q in walk.model.parameters()}
        if not rows:
            rows.append(["walk flat buffers (theta_t, theta_t+1, g_t, u_t, scratch)",
                         f"{bytes_per_param([walk, walk.evaluator], p, own):.0f} B / parameter",
                         "-", "-"])
        per_probe = ", ".join(f"{q.name} {bytes_per_param([q], p, own):.0f}"
                              for q in walk.probes)
        rows.append([f"probe state, preset {preset}",
                     f"{bytes_per_param(walk.probes, p, own):.0f} B / parameter", per_probe,
                     "-"])
    return rows


LINE_KEYS = ("floor_loss", "height", "floor_a")


def autocast_rows(make, steps, rounds, opts):
    """bf16 autocast of the line probe's forwards against float32 along one run: the
    largest |difference| over steps of the probe-set floor loss, height and floor position,
    beside the line's own noise eps (median over steps); and the time of a line step."""
    runs = {mode: make(probe_autocast=mode) for mode in ("off", "bf16")}
    values = {mode: [] for mode in runs}
    for _ in range(steps):
        for mode, step in runs.items():
            values[mode].append(step())
    diff = {k: max(abs(a[f"line_probe_{k}"] - b[f"line_probe_{k}"])
                   for a, b in zip(values["off"], values["bf16"])) for k in LINE_KEYS}
    eps = statistics.median(v["line_probe_eps"] for v in values["off"])
    height = statistics.median(v["line_probe_height"] for v in values["off"])
    t = interleave(dict(runs), rounds, opts.now)
    return [f"{diff['floor_loss']:.1e}", f"{diff['height']:.1e} (of {height:.1e})",
            f"{diff['floor_a']:.3f}", f"{eps:.1e}", show(per_round(t, "bf16", "off"))]


def mlp_stepper(probes, **walk_kwargs):
    """A step function of the digits MLP (SGD, benchmarks/common.py) returning its values."""
    runner = MLPRunner(setting("mlp"), probes, **walk_kwargs)
    runner.keep_rows = True

    def step() -> dict:
        runner.step()
        values = runner.walk.rows[-1][1]
        runner.walk.rows.clear()
        return values

    return step


def run(opts: Options) -> None:
    size = QUICK if opts.quick else FULL
    torch.manual_seed(0)
    model = GPT(VOCAB, size["block_size"], size["n_layer"], size["n_head"], size["n_embd"])
    params = sum(p.numel() for p in model.parameters())
    rounds = 3 if opts.quick else 15
    rows = (economy_rows(model, size, rounds, opts) + hvp_rows(model, size, rounds // 3, opts)
            + line_rows(model, size, rounds, opts) + memory_rows(model, size))
    print(f"\n## The walk on a GPT ({size['n_layer']} layers, {size['n_head']} heads, width "
          f"{size['n_embd']}, block {size['block_size']}, vocab {VOCAB}: {params:,} "
          f"parameters; batch {size['batch']}, AdamW)\n")
    print(table(["what", "base", "ratio: median [IQR] (memory: per probe)", "target"], rows))
    print(f"\n{rounds} interleaved rounds; base: the fastest round of the denominator.")

    steps = 3 if opts.quick else 10
    line = WalkConfig(preset="off", line="every:1")
    gpt = autocast_rows(lambda **kw: Runner(model, size, build_probes(line), **kw).step,
                        steps, 2 if opts.quick else 5, opts)
    mlp = autocast_rows(lambda **kw: mlp_stepper(build_probes(line), **kw),
                        3 if opts.quick else 30, 3 if opts.quick else 11, opts)
    print("\n## bf16 autocast of the line probe's forwards against float32 "
          f"(walk.probe_autocast; largest difference over {steps} GPT steps / "
          f"{3 if opts.quick else 30} MLP steps)\n")
    print(table(["model", "floor loss", "height", "floor a*", "line eps (fp32)",
                 "line step time bf16 / fp32"], [["GPT above", *gpt], ["MLP digits", *mlp]]))




def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
