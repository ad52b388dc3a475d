"""Run by tests/distributed/test_fsdp.py under `torchrun --nproc_per_node 2` (gloo, CPU).

The sharded walk's design on a model sharded by FSDP2 (`fully_shard`), against the same
model unsharded in each process, in float64, for one AdamW step on a global batch split
between the ranks:

- the flat buffers hold each rank's local shards (theta_t, theta_{t+1}, g_t, u_t: P / world
  entries each); every norm and dot product of a step is a float64 partial sum per rank,
  all of them summed by ONE all-reduce;
- the line probe moves a second sharded instance of the model (the same factory, sharded
  the same way: the scratch model), writing theta + a u into its local shards, and sums
  the per-rank probe-set losses of all K points in ONE all-reduce; the trained model is
  never written;
- what rules out the single-device evaluator: `functional_call` on an FSDP2 module with
  plain tensors fails (it expects DTensors), and `copy.deepcopy` of one is refused.

Prints one line `RESULT {json}` on rank 0 and exits 0; fails with a traceback otherwise.
"""

from __future__ import annotations

import copy
import json

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import fully_shard
from torch.func import functional_call

GRID = [-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


def factory() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 10), nn.Tanh(),
                         nn.Linear(10, 3)).double()


def shard(model: nn.Module) -> nn.Module:
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def loss_sum(model, x, y) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y, reduction="sum")


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def local(param) -> torch.Tensor:
    return param.to_local() if hasattr(param, "to_local") else param


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    px = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    py = torch.randint(0, 3, (12,), generator=gen)

    ref, model, scratch = factory(), shard(factory()), shard(factory())
    out: dict = {}

    # the single-device evaluator's tools, on a third FSDP2 instance (a failed call leaves
    # FSDP's lazy initialisation half done: that instance cannot run afterwards)
    spare = shard(factory())
    try:
        functional_call(spare, {n: p.full_tensor() for n, p in spare.named_parameters()},
                        (px,))
        out["functional_call"] = "ran"
    except AttributeError as e:
        out["functional_call"] = f"AttributeError: {e}"
    try:
        copy.deepcopy(spare)
        out["deepcopy"] = "ran"
    except AssertionError as e:
        out["deepcopy"] = f"AssertionError: {e}"

    # one AdamW step: the unsharded model on the whole batch, the sharded one on its half
    opts = [torch.optim.AdamW(m.parameters(), lr=0.05, weight_decay=0.1) for m in (ref, model)]
    (loss_sum(ref, x, y) / len(y)).backward()
    mine = slice(rank * len(y) // world, (rank + 1) * len(y) // world)
    (loss_sum(model, x[mine], y[mine]) / (len(y) // world)).backward()  # FSDP averages ranks
    theta_ref, g_ref = flat(ref.parameters()), flat(p.grad for p in ref.parameters())
    theta, g = flat(local(p) for p in model.parameters()), flat(
        local(p.grad) for p in model.parameters())
    for opt in opts:
        opt.step()
    u_ref = flat(ref.parameters()) - theta_ref
    u = flat(local(p) for p in model.parameters()) - theta
    out["local_entries"] = [theta.numel(), theta_ref.numel()]
    out["step_max_diff"] = float((flat(p.full_tensor() for p in model.parameters())
                                  - flat(ref.parameters())).abs().max())

    # every dot product of the step: partial sums per rank, one all-reduce
    pairs = [(g, g), (u, u), (g, u), (theta, u)]
    partial = torch.tensor([float(a.double() @ b.double()) for a, b in pairs],
                           dtype=torch.float64)
    dist.all_reduce(partial)
    exact = [float(a @ b) for a, b in [(g_ref, g_ref), (u_ref, u_ref), (g_ref, u_ref),
                                       (theta_ref, u_ref)]]
    out["dots"] = [partial.tolist(), exact]

    # the line probe on the sharded scratch model: K points, one all-reduce of K sums
    n_mine = slice(rank * len(py) // world, (rank + 1) * len(py) // world)
    views = [local(p) for p in scratch.parameters()]
    sizes = [v.numel() for v in views]
    sums = torch.zeros(len(GRID), dtype=torch.float64)
    with torch.no_grad():
        for i, a in enumerate(GRID):
            point = theta + a * u
            for v, part in zip(views, point.split(sizes)):
                v.copy_(part.view_as(v))
            sums[i] = loss_sum(scratch, px[n_mine], py[n_mine])
    dist.all_reduce(sums)
    with torch.no_grad():
        names = [n for n, _ in ref.named_parameters()]
        shapes = [p.shape for p in ref.parameters()]
        exact_line = []
        for a in GRID:
            point = (theta_ref + a * u_ref).split([s.numel() for s in shapes])
            params = {n: t.view(s) for n, t, s in zip(names, point, shapes)}
            logits = functional_call(ref, params, (px,))
            exact_line.append(float(nn.functional.cross_entropy(logits, py, reduction="sum")))
    out["line"] = [(sums / len(py)).tolist(), [v / len(py) for v in exact_line]]
    out["model_untouched"] = float((flat(local(p) for p in model.parameters())
                                    - (theta + u)).abs().max())
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
