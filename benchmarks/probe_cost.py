"""What the walk probes cost, as ratios measured side by side in one process.

    python benchmarks/probe_cost.py            # MLP on digits (batch 32, 128), VGG-11 x0.25
    python benchmarks/probe_cost.py --quick    # MLP only, fewer repeats
    python benchmarks/probe_cost.py --threads 2

Three tables per setting, each a median over interleaved repeats (every configuration is
timed once per round, in a rotated order, so drifts of the machine hit all of them alike):

1. family: one probe family on every step, its added time per step as a multiple of a plain
   SGD step (zero_grad, forward, backward, optimizer step) of the same model and batch.
2. preset: a whole training step with the walk at the preset's default schedules (sparse
   families amortised: every:10 costs a tenth of its every-step cost), as a ratio to a plain
   SGD step. Computed from table 1 for the sparse families; measured directly for the rest.
3. line floor: the line probe on the probe set against K plain no-grad forwards of the
   same chunks (K grid points, BN normalising with batch statistics and not tracking).

Every model is a fresh copy of the same initialisation; the probe set is the study default
(512 training examples in chunks of 256).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from sgdwalk.config import DataConfig, ModelConfig, WalkConfig
from sgdwalk.data import load_dataset
from sgdwalk.models import build_model
from sgdwalk.probes.base import Probe
from sgdwalk.probes.line import Line
from sgdwalk.probes.presets import DEFAULTS, PRESETS, build_probes
from sgdwalk.probes.walk import Walk

FAMILIES = tuple(DEFAULTS)


def _setting(name, data_cfg, model_cfg, batch):
    data = load_dataset(data_cfg)
    torch.manual_seed(0)
    model = build_model(model_cfg, data.input_shape, data.num_classes)
    return {"name": name, "data": data, "model": model, "batch": batch}


def settings(quick: bool):
    digits = DataConfig(name="digits")
    out = [
        _setting("mlp digits b32", digits, ModelConfig(name="mlp"), 32),
        _setting("mlp digits b128", digits, ModelConfig(name="mlp"), 128),
    ]
    if not quick:
        cifar = DataConfig(name="synthetic", synthetic_shape=(3, 32, 32), synthetic_n=3000,
                           synthetic_classes=10)
        out.append(_setting("vgg11 x0.25 BN synthetic b100", cifar,
                            ModelConfig(name="vgg11", width_mult=0.25), 100))
    return out


class Runner:
    """One model copy with its optimizer and (optionally) a walk, stepping on fixed batches."""

    def __init__(self, s, walk_cfg: WalkConfig | None):
        self.model = copy.deepcopy(s["model"]).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
        data, b = s["data"], s["batch"]
        self.batches = [(x, y) for x, y in zip(data.train.x.split(b), data.train.y.split(b))
                        if len(y) == b]
        self.i = 0
        self.walk = None
        if walk_cfg is not None:
            self.walk = Walk(self.model, build_probes(walk_cfg), probe_set=data.probe,
                             heldout=(data.val.x[:512], data.val.y[:512]), probe_batch=256)

    def step(self):
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        if self.walk is not None:
            self.walk.before_step(loss, (x, y))
        self.opt.step()
        if self.walk is not None:
            self.walk.after_step(self.opt)
            self.walk.rows.clear()


def interleaved(fns: dict, rounds: int, repeat: int) -> dict:
    """{name: median over rounds of the mean time of `repeat` calls}; order rotates."""
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            for _ in range(repeat):
                fns[n]()
            times[n].append((time.perf_counter() - t) / repeat)
    return {n: statistics.median(v) for n, v in times.items()}


def only(family: str) -> WalkConfig:
    spec = {f: ("every:1" if f == family or (family == "barrier" and f == "line") else "off")
            for f in FAMILIES}
    return WalkConfig(preset="off", **spec)


def family_and_preset_tables(s, rounds, repeat):
    runners = {"sgd": Runner(s, None)}
    for family in FAMILIES:
        runners[family] = Runner(s, only(family))
    for preset in ("off", "cheap", "economy", "line"):
        runners[f"preset {preset}"] = Runner(s, WalkConfig(preset=preset))
    for name, r in runners.items():  # warm up: first calls; the barrier fills its ring
        for _ in range(11 if name == "barrier" else 2):
            r.step()
    t = interleaved({n: r.step for n, r in runners.items()}, rounds, repeat)
    sgd = t["sgd"]
    added = {f: (t[f] - sgd) / sgd for f in FAMILIES}
    added["barrier"] -= added["line"]  # measured with the line probe it needs
    print(f"\n## {s['name']}: plain SGD step {sgd * 1e3:.2f} ms")
    print("family (every step)   added cost / SGD step")
    for f in FAMILIES:
        print(f"  {f:<20} {added[f]:8.2f}")
    print("preset (default schedules)   step with walk / SGD step")
    for preset in PRESETS:
        if f"preset {preset}" in t:
            ratio, how = t[f"preset {preset}"] / sgd, "measured"
        else:  # amortise the sparse families from their every-step cost
            level = PRESETS.index(preset)
            ratio = 1.0 + sum(added[f] / _period(DEFAULTS[f][1])
                              for f, (first, _) in DEFAULTS.items()
                              if PRESETS.index(first) <= level)
            how = "from the family table"
        print(f"  {preset:<12} {ratio:8.2f}   ({how})")


def _period(schedule: str) -> int:
    return int(schedule.split(":")[1])


class _Capture(Probe):
    name = "capture"

    def observe(self, ctx):
        self.ctx = ctx
        return {}


def line_floor_table(s, rounds, repeat):
    model = copy.deepcopy(s["model"]).train()
    capture = _Capture()
    walk = Walk(model, [capture], probe_set=s["data"].probe, probe_batch=256)
    Runner.step(_Bound(model, walk, s))  # one step to get a context
    ctx = capture.ctx
    line = Line(sources=("probe",))
    chunks = walk.evaluator.sources["probe"]
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
    K = len(line.points)

    @torch.no_grad()
    def floor():
        for _ in range(K):
            for x, _ in chunks:
                plain(x)

    t = interleaved({"line": lambda: line.observe(ctx), "floor": floor}, rounds, repeat)
    print(f"line probe on the probe set ({K} points x {len(chunks)} chunks): "
          f"{t['line'] * 1e3:.2f} ms, floor {t['floor'] * 1e3:.2f} ms, "
          f"ratio {t['line'] / t['floor']:.3f}")


class _Bound:
    """Runner-like wrapper for a given model and walk."""

    def __init__(self, model, walk, s):
        self.model, self.walk = model, walk
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01)
        b = s["batch"]
        self.batches = [(s["data"].train.x[:b], s["data"].train.y[:b])]
        self.i = 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MLP only, fewer repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds, repeat = (5, 3) if args.quick else (9, 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{rounds} rounds x {repeat} steps, medians")
    for s in settings(args.quick):
        r, k = (rounds, max(1, repeat // 2)) if "vgg" in s["name"] else (rounds, repeat)
        family_and_preset_tables(s, r, k)
        line_floor_table(s, r, k)


if __name__ == "__main__":
    main()
