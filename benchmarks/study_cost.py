"""What the walk costs on every study model at its study batch size, against a plain step.

    python benchmarks/study_cost.py [--quick] [--profile] [--models KEY,...] [--no-line]
                                    [--threads N] [--clock cpu|wall]

The comparison table of the performance issue, measured side by side in one process,
interleaved and repeated (benchmarks/common.py), on each study model with its study batch
size and optimizer (SGD lr 0.1; weight decay 1e-4, none on the digits): the digits MLP of
the default preset, the MNIST MLP 784-500-350-10 without and with BatchNorm, VGG-11 x0.25,
and in full mode pre-activation ResNet-56 and full-width VGG-11. Each column is a ratio to
a plain SGD step (zero_grad, forward, backward, step), median [IQR] of per-round ratios:

    hooks      the Walk's hooks with a probe that does nothing but ask for every step:
               snapshots of theta_t, g_t, theta_{t+1}, u_t and the step context, the floor
               of any probe that reads the step's vectors (the cheap preset's floor)
    +traffic   hooks plus the memory traffic the trajectory's definitions need at least:
               reading theta_{t+1}, theta_0, g_t, u_t, g_{t-1}, u_{t-1} (with weight decay
               also theta_t and g_{t-1} + wd theta_{t-1}) once and writing the two (three)
               it keeps, done as plain copies and sums: the cheap preset's floor for any
               kernel that reads each vector once (unfused PyTorch ops read some twice)
    +fwd       hooks plus one no-grad forward of the batch (channels_last for conv nets,
               as the probe runs it): the economy preset's floor
    cheap, economy, line      the presets (line: K = 13 on the 512-example probe set)
    cockpit alpha, cockpit economy      Cockpit's Alpha alone and its economy
               configuration on the same steps, every step; only when the package
               cockpit-for-pytorch imports (it is not a dependency of sgdwalk)

Data are synthetic with the study's shapes (1x28x28, 3x32x32; 10 classes): a step's cost
does not depend on the values. `--profile` adds cProfile's busiest functions of `cheap` and
`economy` on the digits and MNIST MLPs, per step. `--models` measures only the named
models of the plan (keys: digits-mlp, mnist-mlp, mnist-mlp-bn, vgg11-x0.25, resnet56, vgg11)
and `--no-line` leaves out the line column (the slowest), for a short run.
"""

from __future__ import annotations

import copy
import cProfile
import pstats
import statistics

import torch
import torch.nn.functional as F

from common import (
    CIFAR_LIKE,
    Options,
    Runner,
    interleave,
    parser,
    per_round,
    plain_forward,
    setting,
    show,
    start,
    table,
    times,
)
from sgdwalk.config import DataConfig, ModelConfig, WalkConfig
from sgdwalk.probes.base import Probe

MNIST_LIKE = DataConfig(name="synthetic", synthetic_shape=(1, 28, 28), synthetic_n=3000,
                        synthetic_classes=10)
STUDY = {
    # key: (label, data, model, batch size, weight decay)
    "digits-mlp": ("MLP 64-128-64-10 BN, digits", DataConfig(name="digits"),
                   ModelConfig(name="mlp"), 32, 0.0),
    "mnist-mlp": ("MLP 784-500-350-10", MNIST_LIKE,
                  ModelConfig(name="mlp", widths=(500, 350), batchnorm=False), 100, 1e-4),
    "mnist-mlp-bn": ("MLP 784-500-350-10 BN", MNIST_LIKE,
                     ModelConfig(name="mlp", widths=(500, 350)), 100, 1e-4),
    "vgg11-x0.25": ("VGG-11 BN x0.25", CIFAR_LIKE, ModelConfig(name="vgg11", width_mult=0.25),
                    100, 1e-4),
    "resnet56": ("ResNet-56 pre-act", CIFAR_LIKE, ModelConfig(name="resnet", depth=56), 100,
                 1e-4),
    "vgg11": ("VGG-11 BN", CIFAR_LIKE, ModelConfig(name="vgg11"), 100, 1e-4),
}
LR = 0.1


class Idle(Probe):
    """Asks for every step and measures nothing: what the Walk's hooks cost by themselves."""

    name = "idle"
    tracks_history = True

    def observe(self, ctx) -> dict:
        return {}


def traffic(params: int, weight_decay: float):
    """A function that moves the bytes the trajectory probe must: 6 (8) parameter-sized
    vectors read once, 2 (3) written, as copies and sums."""
    gen = torch.Generator().manual_seed(0)
    keep = 3 if weight_decay else 2
    src = [torch.randn(params, generator=gen) for _ in range(keep + (5 if weight_decay else 4))]
    dst = [torch.empty(params) for _ in range(keep)]

    def move():
        for d, s in zip(dst, src):
            d.copy_(s)  # read one, write one: the vectors the probe keeps
        return [s.sum() for s in src[keep:]]  # read the others once

    return move


def runners(key: str, line: bool) -> dict[str, Runner]:
    _, data, model, batch, wd = STUDY[key]
    s = setting(key, batch=batch, model_cfg=model, data_cfg=data)
    out = {"sgd": Runner(s, lr=LR, weight_decay=wd),
           "hooks": Runner(s, [Idle()], lr=LR, weight_decay=wd)}
    for preset in ("cheap", "economy") + (("line",) if line else ()):
        out[preset] = Runner(s, WalkConfig(preset=preset), lr=LR, weight_decay=wd)
    return out


def cockpit_steps(s, wd: float) -> dict:
    """{name: step function} for Cockpit's Alpha and economy configuration, or {} when
    cockpit-for-pytorch is not installed."""
    try:
        from backpack import extend
        from cockpit import Cockpit, quantities
        from cockpit.utils import schedules
        from cockpit.utils.configuration import configuration
    except ImportError:
        return {}
    every = schedules.linear(interval=1)
    configs = {"cockpit alpha": lambda: [quantities.Alpha(track_schedule=every)],
               "cockpit economy": lambda: configuration("economy", track_schedule=every)}
    return {name: _cockpit_step(s, wd, make(), extend, Cockpit)
            for name, make in configs.items()}


def _cockpit_step(s, wd, quants, extend, cockpit_cls):
    model = extend(copy.deepcopy(s.model).train())
    loss_fn = extend(torch.nn.CrossEntropyLoss())
    opt = torch.optim.SGD(model.parameters(), lr=LR, weight_decay=wd)
    cockpit = cockpit_cls(model.parameters(), quantities=quants)
    batches = list(zip(s.data.train.x.split(s.batch), s.data.train.y.split(s.batch)))[:-1]
    state = {"i": 0}

    def step():
        i = state["i"]
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        info = {"batch_size": len(y), "loss": loss, "optimizer": opt,
                "individual_losses": F.cross_entropy(out, y, reduction="none").detach()}
        with cockpit(i, info=info):
            loss.backward(create_graph=cockpit.create_graph(i))
        opt.step()
        state["i"] += 1

    return step


def measure(key: str, rounds: int, opts: Options, line: bool):
    rs = runners(key, line)
    sgd = rs["sgd"]
    x = sgd.batch()[0]
    _, fwd = plain_forward(sgd.model, channels_last=x.dim() == 4)  # as the probe runs it
    fns = {name: r.step for name, r in rs.items()}
    fns["fwd"] = lambda: fwd(x)
    fns["traffic"] = traffic(sgd.setting.params, STUDY[key][4])
    fns |= cockpit_steps(sgd.setting, STUDY[key][4])
    for fn in fns.values():  # first calls: allocations, the probes' first steps
        fn()
        fn()
    small = statistics.median(times(sgd.step, opts)) < 0.01
    t = interleave(fns, rounds, opts.now, repeat=3 if small else 1, warm=1 if small else 0)
    ratios = {name: per_round(t, name, "sgd") for name in fns if name != "sgd"}
    ratios["+fwd"] = [h + f for h, f in zip(ratios["hooks"], ratios["fwd"])]
    ratios["+traffic"] = [h + f for h, f in zip(ratios["hooks"], ratios["traffic"])]
    return sgd.setting, t, ratios


COLUMNS = ("hooks", "+traffic", "cheap", "+fwd", "economy", "line", "cockpit alpha",
           "cockpit economy")


def run(opts: Options, profile: bool = False, models: tuple[str, ...] = (),
        line: bool = True) -> None:
    if opts.quick:
        plan = [("digits-mlp", 9, False), ("mnist-mlp-bn", 5, False)]
    else:
        plan = [("digits-mlp", 41, True), ("mnist-mlp", 15, True), ("mnist-mlp-bn", 15, True),
                ("vgg11-x0.25", 7, True), ("resnet56", 3, False), ("vgg11", 3, False)]
    if models:
        plan = [row for row in plan if row[0] in models]
    rows, ms = [], []
    for key, rounds, with_line in plan:
        s, t, ratios = measure(key, rounds, opts, with_line and line)
        step = statistics.median(t["sgd"]) * 1e3
        rows.append([STUDY[key][0], f"{s.params:,}", s.batch, f"{step:.2f}"]
                    + [show(ratios[c]) if c in ratios else "-" for c in COLUMNS])
        added = {n: (statistics.median(t[n]) - statistics.median(t["sgd"])) * 1e3
                 for n in ("hooks", "cheap", "economy")}
        ms.append([STUDY[key][0], f"{added['hooks']:.3f}",
                   f"{added['cheap'] - added['hooks']:.3f}",
                   f"{statistics.median(t['traffic']) * 1e3:.3f}",
                   f"{statistics.median(t['fwd']) * 1e3:.3f}",
                   f"{added['economy'] - added['cheap']:.3f}"])
    print("\n## The walk on the study models: a step / a plain SGD step\n")
    print(table(["model", "params", "batch", "SGD step ms", *COLUMNS], rows))
    print("\nhooks: the Walk's snapshots alone; +traffic: hooks + the trajectory's least memory "
          "traffic (cheap's floor); +fwd: hooks + one no-grad forward (economy's floor is "
          "both). Median [IQR] of per-round ratios. Cockpit: "
          + ("measured." if "cockpit alpha" in ratios else "not installed, not measured."))
    print("\n## Where the added time goes (ms per step, medians)\n")
    print(table(["model", "hooks", "trajectory (cheap - hooks)", "its least traffic",
                 "no-grad forward", "economy probe (economy - cheap)"], ms))
    if profile:
        for key in ("digits-mlp", "mnist-mlp-bn"):
            for preset in ("cheap", "economy"):
                print_profile(key, preset, opts)


def print_profile(key: str, preset: str, opts: Options, steps: int = 200, top: int = 14):
    """cProfile's busiest functions (own time, on the benchmark's clock) of `steps` steps."""
    r = runners(key, False)[preset]
    for _ in range(3):
        r.step()
    prof = cProfile.Profile(opts.now)
    prof.enable()
    for _ in range(steps):
        r.step()
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values()) / steps * 1e6
    busiest = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    print(f"\n## Profile: {preset} on {STUDY[key][0]} ({total:.0f} us of own time per step "
          "under cProfile, which inflates Python)\n")
    print(table(["us/step", "calls/step", "function"],
                [[f"{v[2] / steps * 1e6:.1f}", f"{v[1] / steps:g}", _where(k)]
                 for k, v in busiest]))


def _where(key) -> str:
    file, line, name = key
    if file == "~":
        return name
    return f"{'/'.join(file.split('/')[-2:])}:{line}({name})"


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--profile", action="store_true", help="add cProfile tables")
    p.add_argument("--models", type=_models, default=(),
                   help=f"comma-separated keys of models to measure, of {', '.join(STUDY)}")
    p.add_argument("--no-line", action="store_true", help="leave out the line preset")
    args = p.parse_args(argv)
    run(start(args), profile=args.profile, models=args.models, line=not args.no_line)


def _models(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in STUDY]
    if unknown or not keys:
        import argparse

        raise argparse.ArgumentTypeError(f"expected keys of {', '.join(STUDY)}, got {text!r}")
    return keys


if __name__ == "__main__":
    main()
