"""The walk's cost on a model sharded by FSDP2, against a plain sharded step.

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 benchmarks/fsdp_cost.py

Not part of run.py: it needs torchrun (gloo, CPU). Four copies of one MLP (float32) are
sharded over the processes and each takes AdamW steps on its half of a global batch: one
plain, one walked by each of the presets cheap, economy and line (the last two with a
second sharded instance as `scratch`). The rounds are interleaved (the order rotates each
round, the same on every rank) and timed in elapsed time after a barrier; rank 0 prints
the median and quartiles of the per-round ratios walked step / plain step, and for economy
and line also walked step / its floor: the plain step plus the forwards the preset cannot
do without (one no-grad forward on the rank's batch; that and K - 1 = 12 on the rank's
share of the probe set), run on the plain model.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import fully_shard

from common import quartiles
from sgdwalk.probes.walk import Walk
from sgdwalk.train.distributed import leave_process_group

PRESETS = ("cheap", "economy", "line")


def make(width: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, 10))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=128, help="global batch")
    p.add_argument("--probe", type=int, default=256, help="probe-set examples")
    args = p.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 64, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    probe = (torch.randn(args.probe, 64, generator=gen),
             torch.randint(0, 10, (args.probe,), generator=gen))
    mine = slice(rank * args.batch // world, (rank + 1) * args.batch // world)
    xb, yb = x[mine], y[mine]

    models = {name: make(args.width) for name in ("plain", *PRESETS)}
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in models.items()}
    walks = {name: Walk(models[name], name, probe_set=probe, probe_batch=args.probe,
                        scratch=make(args.width) if name != "cheap" else None)
             for name in PRESETS}

    share = probe[0][rank * args.probe // world : (rank + 1) * args.probe // world]
    forwards = {"economy": [xb], "line": [xb] + [share] * 12}

    def step(name: str) -> None:
        floor = name.endswith("floor")
        name = name.removesuffix(" floor")
        model, opt = models[name if not floor else "plain"], opts[name if not floor else "plain"]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        walk = None if floor else walks.get(name)
        if walk is not None:
            walk.before_step(loss, (xb, yb))
        opt.step()
        if walk is not None:
            walk.after_step(opt)
        if floor:
            with torch.no_grad():
                for inputs in forwards[name]:
                    model(inputs)

    names = [*models, "economy floor", "line floor"]
    for name in names:  # warm up: FSDP's lazy initialisation, the first forwards
        step(name)
        step(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            dist.barrier()
            t = time.perf_counter()
            step(name)
            dist.barrier()
            times[name].append(time.perf_counter() - t)
    if rank == 0:
        params = sum(p.numel() for p in models["plain"].parameters())
        plain = quartiles(times["plain"])[0]
        print(f"{world} gloo processes, 1 thread each; MLP of {params} parameters (float32), "
              f"global batch {args.batch}, probe set {args.probe}; {args.rounds} rounds")
        print(f"plain sharded AdamW step: median {plain * 1e3:.2f} ms")
        for name in PRESETS:
            ratios = [a / b for a, b in zip(times[name], times["plain"])]
            med, q1, q3 = quartiles(ratios)
            print(f"{name:8s} walked / plain: median {med:.2f}x (IQR {q1:.2f}-{q3:.2f}), "
                  f"{quartiles(times[name])[0] * 1e3:.2f} ms")
            if f"{name} floor" in times:
                ratios = [a / b for a, b in zip(times[name], times[f"{name} floor"])]
                med, q1, q3 = quartiles(ratios)
                print(f"{name:8s} walked / its floor: median {med:.2f}x (IQR {q1:.2f}-{q3:.2f})")
    leave_process_group()  # torch 2.13/gloo can abort at exit after FSDP2 (its docstring)


if __name__ == "__main__":
    main()
