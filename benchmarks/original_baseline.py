"""Against the original method: save everything every step, interpolate offline afterwards.

    python benchmarks/original_baseline.py [--quick] [--threads N] [--clock cpu|wall]

Our re-implementation of the original study's protocol (Xing et al. 2018), on full-width
VGG-11 with BN (9.7M parameters; --quick: the x0.25 network), batch 100, plain SGD:

    original  after every step torch.save({"model": state_dict, "optimizer": state_dict})
              (as the original code did each iteration); afterwards, offline, load the two
              checkpoints of each step and evaluate the loss at a = 0, 0.1, ..., 0.9 on the
              line between them, on the probe set (512 examples, chunks of 256, BN on batch
              statistics, the same probing forward as ours, channels_last included)
    ours line     the online line probe (13 points, -0.25..1.25, on the same probe set)
                  with the `line` preset's other families (trajectory, economy)
    ours economy  the `economy` preset (trajectory + floor and height from one forward)

For one window of steps, every run starts from the same initialisation and steps through the
same batches, step-interleaved. Time is each method's added time over plain training (for
the original: the saves during training plus the offline pass). Bytes per step: the
original's checkpoint files; ours, the run store's metrics.sqlite growth per step (from the
window, and from the window's rows logged again for 2,000 steps, which averages SQLite's page
granularity), and separately our resumable checkpoint (model, optimizer and walk state),
written once per epoch (450 steps: the study's CIFAR-10 epoch at batch 100).

The online line does the same kind of forward arithmetic as the offline pass (13 points
against 10), so its time ratio is about 1: online measurement does not make the line
cheaper, it makes it storable. The time advantage comes from economy mode (one forward of
the batch per step instead of 10 of the probe set).

Targets (the performance issue): >= 10x less time, >= 10,000x fewer bytes per step.
"""

from __future__ import annotations

import io
import statistics
import tempfile
from pathlib import Path

import torch

from common import Options, Runner, script, setting, table
from sgdwalk.config import WalkConfig
from sgdwalk.losses import cross_entropy
from sgdwalk.probes.batch import Pairs
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import _chunks
from sgdwalk.store import RunStore

POINTS = [i / 10 for i in range(10)]  # the original's a = 0, 0.1, ..., 0.9
STEPS_PER_EPOCH = 450


def run(opts: Options) -> None:
    key, window = ("vgg11-x0.25", 3) if opts.quick else ("vgg11", 8)
    s = setting(key, batch=100)
    with tempfile.TemporaryDirectory(prefix="sgdwalk-bench-") as tmp:
        tmp = Path(tmp)
        res = measure(s, window, opts, tmp)
    rows = []
    orig_t, orig_b = res["original"]
    for name in ("ours line", "ours economy"):
        t, b, ckpt = res[name]
        rows.append([name, f"{t:.2f}", f"{orig_t:.2f}", f"{orig_t / t:.1f}",
                     f"{b['window']:,.0f} / {b['replayed']:,.0f}", f"{orig_b:,.0f}",
                     f"{orig_b / b['replayed']:,.0f}",
                     f"{orig_b / (b['replayed'] + ckpt / STEPS_PER_EPOCH):,.0f}"])
    print(f"\n## Against the original method: {s.label}, {s.params:,} parameters, batch 100, "
          f"window of {window} steps\n")
    print(table(["ours", "our added s/step", "original added s/step", "time ratio",
                 "our bytes/step (window / replayed)", "original bytes/step", "bytes ratio",
                 "bytes ratio incl. our epoch checkpoint"], rows))
    print(f"\noriginal: {res['detail']['save']:.2f} s/step saving, {res['detail']['offline']:.2f}"
          f" s/step offline ({len(POINTS)} points: {res['detail']['load']:.2f} s loading, the "
          f"rest forwards); plain SGD step {res['detail']['plain']:.2f} s. Our resumable "
          f"checkpoint: {res['ours line'][2] / 1e6:.0f} MB (line) and "
          f"{res['ours economy'][2] / 1e6:.0f} MB (economy) once per epoch "
          f"({STEPS_PER_EPOCH} steps). Targets: time ratio >= 10, bytes ratio >= 10,000.")


def measure(s, window: int, opts: Options, tmp: Path) -> dict:
    walks = {"ours line": WalkConfig(preset="line"), "ours economy": WalkConfig(preset="economy")}
    plain, orig = Runner(s, lr=0.1), Runner(s, lr=0.1)
    stores = {n: RunStore.create(tmp / n.replace(" ", "-"), "benchmark", {}) for n in walks}
    ours = {n: Runner(s, build_probes(cfg), lr=0.1)
            for n, cfg in walks.items()}
    rows: dict[str, list] = {n: [] for n in walks}
    for n in walks:
        ours[n].walk.sink = _collect(stores[n], rows[n])
    ckdir = tmp / "original"
    ckdir.mkdir()
    times = {n: [] for n in ("plain", "original", *walks)}
    saves = []
    _save(orig, ckdir / "step-0.pt")  # theta_0, which the first line needs
    for t in range(window):
        for n, r in [("plain", plain), ("original", orig), *ours.items()]:
            t0 = opts.now()
            r.step()
            if n == "original":
                t1 = opts.now()
                _save(orig, ckdir / f"step-{t + 1}.pt")
                saves.append(opts.now() - t1)
            times[n].append(opts.now() - t0)
    sizes = {n: _db_bytes(stores[n]) for n in walks}
    # offline: the original's interpolation pass
    t0 = opts.now()
    load = _offline(s, orig.model, ckdir, window, opts)
    offline = opts.now() - t0
    plain_step = statistics.median(times["plain"])
    ckpt_bytes = (ckdir / "step-1.pt").stat().st_size
    out = {"original": ((sum(times["original"]) - sum(times["plain"]) + offline) / window,
                        ckpt_bytes),
           "detail": {"save": statistics.median(saves), "offline": offline / window,
                      "load": load / window, "plain": plain_step}}
    for n in walks:
        added = (sum(times[n]) - sum(times["plain"])) / window
        replayed = _replay_bytes(tmp / f"replay-{n.replace(' ', '-')}", rows[n])
        state = {"model": ours[n].model.state_dict(), "optimizer": ours[n].opt.state_dict(),
                 "walk": ours[n].walk.state_dict()}
        buf = io.BytesIO()
        torch.save(state, buf)
        out[n] = (added, {"window": sizes[n] / window, "replayed": replayed}, buf.tell())
    return out


def _save(r: Runner, path: Path) -> None:
    torch.save({"model": r.model.state_dict(), "optimizer": r.opt.state_dict()}, path)


def _collect(store, rows=None):
    def sink(step, values):
        store.log(step, values)
        if rows is not None:
            rows.append((step, values))
    return sink


def _db_bytes(store: RunStore) -> int:
    """Bytes of the closed store's metric file, minus an empty store's."""
    path = store.path
    store.close()
    empty = path.parent / (path.name + "-empty")
    RunStore.create(empty, "benchmark", {}).close()
    return _size(path) - _size(empty)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("metrics.sqlite*"))


def _replay_bytes(path: Path, rows: list, steps: int = 2000) -> float:
    """Metric bytes per step when the window's rows are logged again for `steps` steps."""
    per_step = [v for step, v in rows if step >= 0]
    with RunStore.create(path, "benchmark", {}) as store:
        for step, v in rows:
            if step < 0:
                store.log(step, v)
        store.flush()
        before = _size(path)
        for t in range(steps):
            store.log(t, per_step[t % len(per_step)])
            if t % 50 == 49:
                store.flush()
    return (_size(path) - before) / steps


def _offline(s, model, ckdir: Path, window: int, opts: Options) -> float:
    """The original's offline pass; returns the time spent loading checkpoints."""
    from sgdwalk.functional.flat import ParamLayout
    from sgdwalk.probes.evaluator import LossEvaluator

    layout = ParamLayout.of(model)
    # the same probing forward as ours (BN batch stats), on the probe set as a named source
    chunks = _chunks(Pairs(cross_entropy), (s.data.probe.x, s.data.probe.y), 256)
    ev = LossEvaluator(model, layout, sources={"probe": chunks})
    names = list(layout.names)
    load = 0.0
    for t in range(window):
        t0 = opts.now()
        a = torch.load(ckdir / f"step-{t}.pt", weights_only=True)["model"]
        b = torch.load(ckdir / f"step-{t + 1}.pt", weights_only=True)["model"]
        load += opts.now() - t0
        start = torch.cat([a[n].reshape(-1) for n in names])
        stop = torch.cat([b[n].reshape(-1) for n in names])
        per = ev.segment(start, stop, POINTS, "probe")
        per.double().mean(dim=1)
    return load


def main(argv=None) -> None:
    script(run, __doc__, argv)


if __name__ == "__main__":
    main()
