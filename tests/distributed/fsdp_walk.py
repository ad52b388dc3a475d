"""Run by tests/distributed/test_fsdp.py under `torchrun --nproc_per_node 2` (gloo, CPU).

A researcher's own loop on a model sharded by FSDP2 (`fully_shard`), walked by `Walk(...,
scratch=<a second sharded instance>)`, against the same Walk on the same model unsharded
in each process on the global batch, in float64:

- "adamw": AdamW with weight decay, `before_step`/`after_step` by hand, the line preset
  (trajectory, economy, line) on the probe set (13 examples in chunks of 5: uneven shares),
  the step's batch and a held-out set given as a list of batches;
- "sgd": SGD with momentum through `walk.attach` and `hooks.record`, the economy preset
  with economy_reach = "peak" (a forward at a_2 = 3) and the trajectory every 2nd step
  (its unobserved steps and the context's own f'(0) reduce their dots separately).

Each rank gives the walk its own half of the global batch and its own loss. Also: the
refusals of what the sharded walk cannot measure (one line each), and the two facts that
rule out the single-device evaluator on a sharded model (`functional_call` fails,
`copy.deepcopy` is refused), which is why the forwards run on a scratch instance.

Prints one line `RESULT {json}` on rank 0 and exits 0; fails with a traceback otherwise.
"""

from __future__ import annotations

import copy
import json
import math

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import fully_shard
from torch.func import functional_call

from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError
from sgdwalk.probes.walk import Walk
from sgdwalk.train.distributed import leave_process_group

STEPS, BATCH = 4, 16
CONFIGS = {
    "adamw": WalkConfig(preset="line", line_sources=("probe", "batch", "heldout"),
                        line_points=7),
    "sgd": WalkConfig(preset="economy", economy_reach="peak", economy_lr_peak=0.3,
                      trajectory="every:2"),
}


class Scale(nn.Module):
    """One parameter, in the root's FSDP group (which keeps its unsharded parameters after
    a forward), whose dim-0 shard on rank 1 of 2 is empty (an empty layer segment)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.5]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.weight


def factory(width: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, width), nn.Tanh(), nn.Linear(width, 10), nn.Tanh(),
                         nn.Linear(10, 3), Scale()).double()


def shard(model: nn.Module) -> nn.Module:
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def data():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, BATCH, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (STEPS, BATCH), generator=gen)
    probe = (torch.randn(13, 6, generator=gen, dtype=torch.float64),
             torch.randint(0, 3, (13,), generator=gen))
    hx, hy = torch.randn(9, 6, generator=gen, dtype=torch.float64), torch.randint(
        0, 3, (9,), generator=gen)
    return x, y, probe, [(hx[:4], hy[:4]), (hx[4:], hy[4:])]


def train(name: str, model: nn.Module, walk: Walk, x, y, part: slice) -> list:
    """The user's loop: each process its part of every global batch (all of it alone).

    Returns: for each step of a sharded walk, the shapes of the tensors it summed over
    ranks (per-layer dot tables and (points, examples) losses); [] unsharded."""
    sums: list[list] = []
    if walk.ranks is not None:
        total = walk.ranks.sum_

        def counted(t: torch.Tensor) -> torch.Tensor:
            sums[-1].append(list(t.shape))
            return total(t)

        walk.ranks.sum_ = counted
    opt = optimizer(name, model)
    hooks = walk.attach(opt) if name == "sgd" else None
    for t in range(STEPS):
        sums.append([])
        xb, yb = x[t, part], y[t, part]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()  # FSDP averages the ranks' gradients: the global batch's
        if hooks is not None:
            hooks.record(loss, (xb, yb))
            opt.step()
        else:
            walk.before_step(loss, (xb, yb))
            opt.step()
            walk.after_step(opt)
    return sums if walk.ranks is not None else []


def differences(rows: list, ref: list) -> dict:
    """The largest relative difference of every emitted value (equal values, NaN at both
    included, differ by 0), the value it was found in, and the steps of the rows."""
    assert [s for s, _ in rows] == [s for s, _ in ref]
    worst, where = 0.0, ""
    for (step, got), (_, want) in zip(rows, ref):
        assert sorted(got) == sorted(want), (sorted(got), sorted(want))
        for key in want:
            a = torch.as_tensor(got[key], dtype=torch.float64).reshape(-1)
            b = torch.as_tensor(want[key], dtype=torch.float64).reshape(-1)
            assert a.shape == b.shape, key
            for u, v in zip(a.tolist(), b.tolist()):
                if u == v or (math.isnan(u) and math.isnan(v)):
                    continue
                rel = abs(u - v) / max(abs(u), abs(v))
                if rel > worst:
                    worst, where = rel, f"{key} at step {step}"
    return {"max_rel": worst, "where": where, "steps": [s for s, _ in ref]}


def refusals(probe, make_model) -> dict:
    """Each refused walk's error text (one line each), on fresh sharded models."""
    model, scratch = make_model(), make_model()
    cases = {
        "curvature": lambda: Walk(model, "curvature", probe_set=probe, scratch=scratch),
        "jvp": lambda: Walk(model, WalkConfig(preset="economy", economy_jvp=True),
                            scratch=scratch),
        "bn_policy": lambda: Walk(model, "line", probe_set=probe, bn_policy="eval",
                                  scratch=scratch),
        "no_scratch": lambda: Walk(model, "economy"),
        "unlike_scratch": lambda: Walk(model, "economy", scratch=shard(factory(width=12))),
        "plain_scratch": lambda: Walk(factory(), "economy", scratch=factory()),
    }
    out = {}
    for name, make in cases.items():
        try:
            make()
            out[name] = "accepted"
        except ConfigError as e:
            out[name] = str(e)
    walk = Walk(model, "cheap")  # no probe evaluates: no scratch needed
    try:
        walk.evaluator.hessian("probe", torch.zeros(1))
        out["hessian"] = "ran"
    except ConfigError as e:
        out["hessian"] = str(e)
    return out


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y, probe, heldout = data()
    part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    out: dict = {"runs": {}}

    # the single-device evaluator's tools on a sharded instance (a failed call leaves
    # FSDP's lazy initialisation half done: that instance cannot run afterwards)
    spare = shard(factory())
    try:
        functional_call(spare, {n: p.full_tensor() for n, p in spare.named_parameters()},
                        (probe[0],))
        out["functional_call"] = "ran"
    except AttributeError as e:
        out["functional_call"] = f"AttributeError: {e}"
    try:
        copy.deepcopy(spare)
        out["deepcopy"] = "ran"
    except AssertionError as e:
        out["deepcopy"] = f"AssertionError: {e}"
    out["refused"] = refusals(probe, lambda: shard(factory()))

    for name, cfg in CONFIGS.items():
        ref, model, scratch = factory(), shard(factory()), shard(factory())
        with torch.no_grad():  # a look before training: the root groups stay unsharded
            model(probe[0])
            scratch(probe[0])
        walks = [Walk(m, cfg, probe_set=probe, heldout=heldout, probe_batch=5, **extra)
                 for m, extra in ((ref, {}), (model, {"scratch": scratch}))]
        train(name, ref, walks[0], x, y, slice(None))
        sums = train(name, model, walks[1], x, y, part)
        run = differences(walks[1].rows, walks[0].rows)
        run["sums"] = sums
        run["layers"] = len(walks[1].layout.layers)
        # the entries of each layer on each rank: the root's Scale is empty on rank 1
        mine = torch.tensor([b - a for a, b in walks[1].layout.layer_bounds])
        every = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(every, mine)
        run["layer_entries"] = [t.tolist() for t in every]
        run["keys"] = sorted({k for _, v in walks[0].rows for k in v})
        run["local_entries"] = [walks[1].layout.numel, walks[0].layout.numel]
        # the trained model took the unsharded steps, and the walk never wrote it
        with torch.no_grad():
            run["model_diff"] = max(float((p.full_tensor() - q).abs().max())
                                    for p, q in zip(model.parameters(), ref.parameters()))
        summary = torch.tensor([run["max_rel"], run["model_diff"]], dtype=torch.float64)
        dist.all_reduce(summary, op=dist.ReduceOp.MAX)  # the worse of the two ranks
        run["max_rel"], run["model_diff"] = summary.tolist()
        out["runs"][name] = run
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)
    leave_process_group()  # torch 2.13/gloo can abort at exit after FSDP2 (its docstring)


if __name__ == "__main__":
    main()
