"""The walk's cost on a CUDA device: each preset / a plain step, per study model and the GPT.

    python benchmarks/gpu_cost.py [--quick] [--models digits-mlp,vgg11,...] [--profile]

The tables of `study_cost.py` (cheap, economy and line per study model at its study batch)
and `transformer_cost.py` (economy and line on the gpt-char preset's GPT with AdamW),
measured on the GPU: every model, batch, probe set and walk buffer lives on the device.
The clock is elapsed time after `torch.cuda.synchronize()`, read before and after each
timed call, so a ratio compares the whole work queued by each step. The compared steps are
interleaved and repeated as on the CPU (common.py), and the tables give medians [IQR] of the
per-round ratios. Columns: `hooks` is the Walk's snapshots alone (an idle probe that asks
for every step), `curvature` the curvature preset's dense part (one Hessian-vector product
of the step's batch loss a step, sharpness off). Without a CUDA device it says so and exits.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from common import Options, Runner, interleave, parser, per_round, setting, show, table
from sgdwalk.config import WalkConfig
from study_cost import LR, STUDY, Idle

DEVICE = "cuda"
PRESETS = ("hooks", "cheap", "economy", "line", "curvature")


def now() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def study_row(key: str, rounds: int) -> list[str]:
    label, data, model, batch, wd = STUDY[key]
    s = setting(key, batch=batch, model_cfg=model, data_cfg=data)
    kw = {"lr": LR, "weight_decay": wd, "device": DEVICE}
    runners = {"sgd": Runner(s, **kw), "hooks": Runner(s, [Idle()], **kw)}
    for preset in ("cheap", "economy", "line"):
        runners[preset] = Runner(s, WalkConfig(preset=preset), **kw)
    runners["curvature"] = Runner(s, WalkConfig(preset="curvature", sharpness="off"), **kw)
    fns = {name: r.step for name, r in runners.items()}
    for fn in fns.values():  # first calls: allocations, kernels chosen, probes' first steps
        for _ in range(3):
            fn()
    t = interleave(fns, rounds, now, repeat=5, warm=1)
    return [label, f"{s.params:,}", str(batch), f"{statistics.median(t['sgd']) * 1e3:.2f}",
            *(show(per_round(t, p, "sgd")) for p in PRESETS)]


def gpt_rows(rounds: int) -> list[list[str]]:
    import transformer_cost as tc
    from sgdwalk.losses import sequence_cross_entropy
    from sgdwalk.models.gpt import GPT
    from sgdwalk.probes.presets import build_probes
    from sgdwalk.probes.walk import Walk

    size = tc.FULL
    torch.manual_seed(0)
    base = GPT(vocab_size=tc.VOCAB, n_layer=size["n_layer"], n_head=size["n_head"],
               n_embd=size["n_embd"], block_size=size["block_size"]).to(DEVICE)
    batches = [tuple(t.to(DEVICE) for t in tc.tokens(size["batch"], size["block_size"], seed))
               for seed in range(4)]
    px, py = (t.to(DEVICE) for t in tc.tokens(size["probe"], size["block_size"], 100))

    def stepper(preset: str | None):
        import copy

        model = copy.deepcopy(base).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
        walk = None if preset is None else Walk(
            model, build_probes(WalkConfig(preset=preset)), loss_fn=sequence_cross_entropy,
            probe_set=(px, py), probe_batch=size["probe"] // 2)
        i = [0]

        def step():
            x, y = batches[i[0] % len(batches)]
            i[0] += 1
            opt.zero_grad(set_to_none=True)
            loss = sequence_cross_entropy(model(x), y).mean()
            loss.backward()
            if walk is not None:
                walk.before_step(loss.detach(), (x, y))
            opt.step()
            if walk is not None:
                walk.after_step(opt)
                walk.rows.clear()

        return step

    fns = {"adamw": stepper(None), "cheap": stepper("cheap"),
           "economy": stepper("economy"), "line": stepper("line")}
    for fn in fns.values():
        for _ in range(3):
            fn()
    t = interleave(fns, rounds, now, repeat=5, warm=1)
    params = sum(p.numel() for p in base.parameters())
    return [[f"GPT {size['n_layer']}x{size['n_embd']} (AdamW)", f"{params:,}",
             str(size["batch"]), f"{statistics.median(t['adamw']) * 1e3:.2f}", "-",
             *(show(per_round(t, p, "adamw")) for p in ("cheap", "economy", "line")), "-"]]


def profile_rows(key: str, steps: int = 40) -> list[list[str]]:
    """Per step of plain SGD, cheap and economy on a study model, from `torch.profiler`
    (CPU and CUDA activity, `steps` steps after 10 warm ones): wall ms, kernel launches, the
    host's waits for the device (scalar reads, copies, stream syncs) and the kernels' time."""
    from torch.profiler import ProfilerActivity, profile

    label, data, model, batch, wd = STUDY[key]
    s = setting(key, batch=batch, model_cfg=model, data_cfg=data)
    rows = []
    for name, walk in (("sgd", None), ("cheap", WalkConfig(preset="cheap")),
                       ("economy", WalkConfig(preset="economy"))):
        r = Runner(s, walk, lr=LR, weight_decay=wd, device=DEVICE)
        for _ in range(10):
            r.step()
        began = now()
        for _ in range(steps):
            r.step()
        wall = (now() - began) / steps * 1e3
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(steps):
                r.step()
            now()
        events = prof.key_averages()
        by = {e.key: e for e in events}

        def count(k, by=by):
            return by[k].count / steps if k in by else 0.0

        host = sum(by[k].cpu_time_total for k in ("cudaMemcpyAsync", "cudaStreamSynchronize")
                   if k in by) / steps / 1e3
        kernels = sum(e.self_device_time_total for e in events
                      if e.device_type.name == "CUDA") / steps / 1e3
        rows.append([label, name, f"{wall:.2f}", f"{count('cudaLaunchKernel'):.0f}",
                     f"{count('aten::_local_scalar_dense'):.0f}",
                     f"{count('cudaMemcpyAsync'):.0f}", f"{count('cudaStreamSynchronize'):.0f}",
                     f"{host:.2f}", f"{kernels:.2f}"])
    return rows


def run(opts: Options, models: tuple[str, ...] = (), profiled: bool = False) -> None:
    if not torch.cuda.is_available():
        print("gpu_cost: no CUDA device here; nothing measured")
        return
    rounds = 5 if opts.quick else 15
    keys = [m for m in models if m != "gpt"] if models else (
        ("digits-mlp", "vgg11-x0.25") if opts.quick else tuple(STUDY))
    rows = []
    for key in keys:
        began = time.perf_counter()
        rows.append(study_row(key, rounds))
        print(f"[{key}: {time.perf_counter() - began:.0f} s]", file=sys.stderr, flush=True)
    if not models or "gpt" in models:
        rows += gpt_rows(rounds)
    print(f"\n## On {torch.cuda.get_device_name(0)}: a step with the walk / a plain step\n")
    print(table(["model", "params", "batch", "step ms", *PRESETS], rows))
    print(f"\nElapsed time after cuda synchronize; {rounds} interleaved rounds of 5 steps; "
          "median [IQR] of per-round ratios. Plain step: SGD (study models), AdamW (GPT).")
    if profiled:
        rows = [r for key in ("mnist-mlp-bn", "vgg11-x0.25") for r in profile_rows(key)]
        print("\n## Where a step's time goes on the device (per step, torch.profiler)\n")
        print(table(["model", "preset", "wall ms", "cudaLaunchKernel", "_local_scalar_dense",
                     "cudaMemcpyAsync", "cudaStreamSynchronize", "host ms in copies + syncs",
                     "GPU kernel ms"], rows))


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--models", default="", help="comma-separated keys of study_cost.STUDY, "
                                                  "and/or gpt (default: all)")
    p.add_argument("--profile", action="store_true",
                   help="add the per-step profile of sgd, cheap and economy (torch.profiler)")
    args = p.parse_args(argv)
    opts = Options(quick=args.quick, clock="wall", threads=args.threads)
    torch.set_num_threads(opts.threads)
    run(opts, tuple(m for m in args.models.split(",") if m), args.profile)


if __name__ == "__main__":
    main()
