"""Shared pieces of the benchmarks: the machine, the clock, interleaved timing, the models.

Every benchmark compares things measured side by side in one process and prints ratios.
The machine is shared and noisy (another process can make a step 3x slower for a while),
so the compared functions are *interleaved*: each round calls every one of them once, in
an order rotated from round to round, and a ratio is formed per round (a_i / b_i of the same
round) before taking the median and the interquartile range over rounds. A slow spell then
hits both sides of a ratio alike.

The default clock is the process CPU time with one torch thread: time spent waiting for the
CPU while another process runs is not counted, which removes most of the noise of a shared
machine. `--clock wall` (with any `--threads`) measures elapsed time instead.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sgdwalk.config import DataConfig, ModelConfig, WalkConfig
from sgdwalk.data import load_dataset
from sgdwalk.models import build_model
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


@dataclass
class Options:
    """What every benchmark reads: quick mode, clock, threads."""

    quick: bool = False
    clock: str = "cpu"
    threads: int = 1

    @property
    def now(self) -> Callable[[], float]:
        return CLOCKS[self.clock]


def configure(opts: Options) -> None:
    torch.set_num_threads(opts.threads)


def machine(opts: Options) -> str:
    """One paragraph naming the machine, torch, threads and clock."""
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"CPU {model}, {cores} cores; GPU {gpu}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op thread(s); clock: {opts.clock} "
            f"({'process CPU time' if opts.clock == 'cpu' else 'elapsed'})")


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: --quick, --threads, --clock."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small models, few repeats (CI)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="process CPU time (default) or elapsed time")
    return p


def start(args: argparse.Namespace) -> Options:
    """Options from parsed arguments; sets the threads and prints the machine."""
    opts = Options(quick=args.quick, clock=args.clock, threads=args.threads)
    configure(opts)
    print(machine(opts))
    return opts


def script(run: Callable[[Options], None], doc: str, argv=None) -> None:
    """The main() of a benchmark script: the shared options, the machine, then `run`."""
    run(start(parser(doc).parse_args(argv)))


# -- timing ----------------------------------------------------------------------------------

def interleave(fns: dict[str, Callable[[], object]], rounds: int, now: Callable[[], float],
               repeat: int = 1, warm: int = 0) -> dict[str, list[float]]:
    """{name: per-round time of `repeat` calls / repeat}; the call order rotates each round.

    warm: untimed calls before the timed ones in each round, so that a function is timed
    after itself (steady state) and not after whatever ran before it: a heavy function
    leaves the caches cold for the next one, which matters for sub-millisecond steps.
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            for _ in range(warm):
                fns[n]()
            t = now()
            for _ in range(repeat):
                fns[n]()
            times[n].append((now() - t) / repeat)
    return times


def times(fn: Callable[[], object], opts: Options, n: int = 5) -> list[float]:
    """n timings of one call each (to size a benchmark's repeats)."""
    out = []
    for _ in range(n):
        t = opts.now()
        fn()
        out.append(opts.now() - t)
    return out


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(median, first quartile, third quartile)."""
    v = sorted(values)
    if len(v) < 2:
        return v[0], v[0], v[0]
    q1, med, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return med, q1, q3


def per_round(times: dict[str, list[float]], a: str, b: str, minus: str | None = None):
    """Per-round ratios a / b, or (a - minus) / b."""
    sub = times[minus] if minus else [0.0] * len(times[a])
    return [(x - s) / y for x, s, y in zip(times[a], sub, times[b])]


def show(values: list[float], digits: int = 2) -> str:
    """'median [q1-q3]' of a list of ratios."""
    med, q1, q3 = quartiles(values)
    return f"{med:.{digits}f} [{q1:.{digits}f}-{q3:.{digits}f}]"


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.2f} ms"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-markdown table (also readable as plain text)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, rows)])


# -- models ------------------------------------------------------------------------------------

CIFAR_LIKE = DataConfig(name="synthetic", synthetic_shape=(3, 32, 32), synthetic_n=3000,
                        synthetic_classes=10)
SETTINGS = {
    # key: (label, data config, model config)
    "mlp": ("MLP 64-128-64-10 BN, digits", DataConfig(name="digits"), ModelConfig(name="mlp")),
    "vgg11-x0.25": ("VGG-11 BN x0.25, synthetic 3x32x32", CIFAR_LIKE,
                    ModelConfig(name="vgg11", width_mult=0.25)),
    "resnet20": ("ResNet-20 (pre-act), synthetic 3x32x32", CIFAR_LIKE,
                 ModelConfig(name="resnet", depth=20)),
    "vgg11": ("VGG-11 BN full width, synthetic 3x32x32", CIFAR_LIKE, ModelConfig(name="vgg11")),
}
_DATA: dict = {}


@dataclass
class Setting:
    key: str
    label: str
    data: object  # sgdwalk.data.Dataset
    model: torch.nn.Module  # the shared initialisation; runners take copies
    batch: int

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def setting(key: str, batch: int = 128, model_cfg: ModelConfig | None = None,
            data_cfg: DataConfig | None = None) -> Setting:
    label, data_default, model_default = SETTINGS.get(key, (key, None, None))
    data_cfg = data_cfg or data_default
    if data_cfg not in _DATA:
        _DATA[data_cfg] = load_dataset(data_cfg)
    data = _DATA[data_cfg]
    torch.manual_seed(0)
    model = build_model(model_cfg or model_default, data.input_shape, data.num_classes)
    return Setting(key, label, data, model.train(), batch)


class Runner:
    """A model copy with its optimizer and (optionally) a walk, stepping through fixed batches.

    All runners of one setting start from the same initialisation and see the same batches;
    the walk never changes the trajectory, so they stay identical whatever they measure.
    """

    def __init__(self, s: Setting, walk: WalkConfig | list | None = None, lr: float = 0.05,
                 probe_size: int | None = None, weight_decay: float = 0.0, device: str = "cpu",
                 **walk_kwargs):
        self.setting = s
        self.model = copy.deepcopy(s.model).train().to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        data, b = s.data, s.batch
        self.batches = [(x.to(device), y.to(device))
                        for x, y in zip(data.train.x.split(b), data.train.y.split(b))
                        if len(y) == b]
        self.i = 0
        self.walk = None
        if walk is not None:
            probes = build_probes(walk) if isinstance(walk, WalkConfig) else walk
            probe = data.probe if probe_size is None else _head(data.train, probe_size)
            kwargs = {"probe_set": (probe.x.to(device), probe.y.to(device)), "probe_batch": 256,
                      "heldout": (data.val.x[:512].to(device), data.val.y[:512].to(device)),
                      **walk_kwargs}
            if isinstance(walk, WalkConfig):
                kwargs.setdefault("bn_policy", walk.bn_policy)
            self.walk = Walk(self.model, probes, **kwargs)
        self.keep_rows = False

    def batch(self):
        return self.batches[self.i % len(self.batches)]

    def step(self) -> float:
        x, y = self.batch()
        self.i += 1
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        if self.walk is not None:
            self.walk.before_step(loss.detach(), (x, y))
        self.opt.step()
        if self.walk is not None:
            self.walk.after_step(self.opt)
            if not self.keep_rows:
                self.walk.rows.clear()
        return loss.item()


def _head(split, n):
    from sgdwalk.data import Split

    return Split(split.x[:n], split.y[:n])


def only(family: str, **extra) -> WalkConfig:
    """A walk with one probe family on every step (the barrier needs the line too)."""
    from sgdwalk.probes.registry import registered

    spec = {f: ("every:1" if f == family or (family == "barrier" and f == "line") else "off")
            for f in (s.name for s in registered())}
    return WalkConfig(preset="off", **{**spec, **extra})


def plain_forward(model: torch.nn.Module, channels_last: bool = False):
    """A copy of `model` whose BN layers use batch statistics without tracking (the probe's
    'batch' policy), and a no-grad forward function of it."""
    twin = copy.deepcopy(model).train()
    for m in twin.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False

    def forward(x):
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return twin(x)

    return twin, forward
