"""The walk on a model sharded by FSDP2 (`torch.distributed.fsdp.fully_shard`).

    model, scratch = fully_shard(make()), fully_shard(make())   # same factory, same sharding
    walk = Walk(model, probes="line", probe_set=(x_probe, y_probe), scratch=scratch)
    ...                                  # each rank: its own batch, its own loss, as ever
    walk.before_step(loss, (x, y)); optimizer.step(); walk.after_step(optimizer)

Every rank holds dim-0 shards of every parameter (DTensors on a 1-D device mesh). The walk:

- keeps its flat buffers of the LOCAL shards (`p.to_local()`, gradients likewise): theta_t,
  theta_{t+1}, g_t, u_t and the evaluator's point hold P_r entries on rank r (P / world,
  rounded up per parameter);
- computes every dot product of a step as float64 partial sums over the local entries, per
  layer (the layout's layer segments of the local shards), and sums the (layers, pairs)
  table over the ranks with one all-reduce (`Ranks.sum_`, the step context's `reduce`): the
  ranks' shards partition every parameter, so the sums are the full per-layer values;
- evaluates losses at moved points on `scratch`, a second instance made by the same factory
  and sharded the same way: theta + a u is written into its local shards and its forward
  runs (FSDP all-gathers the parameters); the trained model is never written. Each rank
  runs its share of the examples (a contiguous slice of every chunk of the probe set; its
  own batch of the step), and one all-reduce of a (K, N) tensor, each rank's losses in
  their columns and zeros elsewhere (adding zeros is exact), gives every rank the per-
  example losses of the unsharded evaluation: the probes run on them unchanged;
- takes the step's batch as the ranks' batches in rank order: one all-gather of each rank's
  (loss x examples, examples, chunks) gives the global loss and every rank's columns.

Probes that differentiate the model or call `torch.func.functional_call` (sharpness,
curvature, barriers, gradient noise, ...), the economy's f'(1) (a jvp) and BN policies that
read or rebuild BatchNorm statistics are refused when the Walk is made.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from sgdwalk.errors import ConfigError
from sgdwalk.functional.flat import ParamLayout, params_of
from sgdwalk.probes.batch import BatchFormat
from sgdwalk.probes.evaluator import Data, LossEvaluator, _Sweep

SUPPORTED = ("trajectory", "economy", "line")  # dot products and no-grad forwards only


def mesh_of(model: torch.nn.Module):
    """The device mesh of a model sharded by FSDP2; None for a model of plain tensors.

    A sharded model's groups are resharded first (`reshard`): after a forward, the root's
    group keeps its unsharded parameters (plain tensors) registered.

    Raises: ConfigError when only some trainable parameters are sharded, or when they are
    not dim-0 shards on one 1-D mesh (HSDP replicas or tensor parallelism: the local pieces
    would not partition the parameters, and the sums over ranks would be wrong).
    """
    # a DTensor exists only once its module is imported, which costs most of a second:
    # a model of plain tensors is told apart without importing it
    dtensor = sys.modules.get("torch.distributed.tensor")
    if dtensor is None or not any(isinstance(p, dtensor.DTensor) for p in model.parameters()):
        return None
    reshard(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    DTensor, Shard = dtensor.DTensor, dtensor.Shard
    plain = [n for n, p in named if not isinstance(p, DTensor)]
    if plain:
        raise ConfigError(f"Walk: expected every trainable parameter sharded by fully_shard "
                          f"(shard the root module too), got plain tensors: "
                          f"{', '.join(plain[:3])}")
    mesh = named[0][1].device_mesh
    for name, p in named:
        if p.device_mesh != mesh or mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
            raise ConfigError(f"Walk: expected parameters sharded on dim 0 over one 1-D device "
                              f"mesh (fully_shard), got {tuple(p.placements)} on a "
                              f"{p.device_mesh.ndim}-D mesh for {name!r}")
    return mesh


def local_layout(model: torch.nn.Module) -> ParamLayout:
    """The layout of a sharded model's local shards, in `named_parameters()` order: the same
    names and layers on every rank, each rank's own entries."""
    return ParamLayout.from_named(
        (n, p.to_local()) for n, p in model.named_parameters() if p.requires_grad)


def check_walk(probes: Sequence, bn_policy: str, model: torch.nn.Module,
               scratch: torch.nn.Module | None, mesh) -> None:
    """Refuse, in one line, what the sharded walk cannot measure: probes outside SUPPORTED,
    the economy's jvp, BN policies other than "batch", and a missing or unlike scratch
    model when a probe evaluates losses."""
    where = "Walk on a sharded (FSDP2) model"
    other = [p.name for p in probes if p.name not in SUPPORTED]
    if other:
        raise ConfigError(f"{where}: expected probes among {', '.join(SUPPORTED)} (dot "
                          f"products and no-grad forwards), got {', '.join(other)}")
    if any(p.name == "economy" and p.jvp for p in probes):
        raise ConfigError(f"{where}: expected walk.economy_jvp = false (f'(1) is a forward-"
                          f"mode derivative through functional_call), got true")
    if bn_policy != "batch":
        raise ConfigError(f"{where}: expected bn_policy 'batch' (the scratch model's own "
                          f"BatchNorm statistics are not the trained model's), got "
                          f"{bn_policy!r}")
    if not any(p.sources for p in probes):
        return
    if scratch is None or scratch is model:
        got = "none" if scratch is None else "the trained model itself"
        raise ConfigError(f"{where}: expected scratch= a second instance made by the same "
                          f"factory and sharded the same way (the line and economy forwards "
                          f"run on it), got {got}")
    if mesh_of(scratch) != mesh or _shapes(scratch) != _shapes(model):
        mine, theirs = _shapes(model), _shapes(scratch)
        diff = next((f"{a} against {b}" for a, b in zip(mine, theirs) if a != b),
                    f"{len(mine)} parameters against {len(theirs)}")
        raise ConfigError(f"{where}: expected scratch= sharded like the model (the same names "
                          f"and local shapes on the same mesh), got {diff}")


def fsdp_modules(model: torch.nn.Module) -> list:
    """The modules of `model` that `fully_shard` made (each holds a parameter group)."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def reshard(model: torch.nn.Module) -> None:
    """Register the sharded parameters of every FSDP group again, freeing unsharded copies.

    A group that does not reshard after its forward (the root's, by `fully_shard`'s default)
    keeps its unsharded parameters registered after a forward, and its next forward reuses
    them: written shards are seen only after this.
    """
    for module in fsdp_modules(model):
        module.reshard()


def _shapes(model: torch.nn.Module) -> list[tuple]:
    return [(n, tuple(p.to_local().shape) if hasattr(p, "to_local") else None)
            for n, p in model.named_parameters() if p.requires_grad]


class Shared(list):
    """This rank's chunks of data that all ranks evaluate together: `index` holds the
    columns of its examples among the `total` examples of all ranks, in the order of the
    unsharded data."""

    def __init__(self, chunks: Sequence[tuple], index: torch.Tensor, total: int):
        super().__init__(chunks)
        self.index = index
        self.total = total


class Ranks:
    """The walk's collectives over the ranks of a 1-D device mesh."""

    def __init__(self, mesh):
        self.group = mesh.get_group()
        self.rank = mesh.get_local_rank()
        self.world = mesh.size()
        self.device = torch.device(mesh.device_type)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce `tensor` in place to its sum over ranks."""
        dist.all_reduce(tensor, group=self.group)
        return tensor

    def all(self, flag: bool) -> bool:
        """True on every rank when it is true on all of them."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.group)
        return bool(t.item() > 0)

    def share(self, batches: BatchFormat, chunks: Sequence[tuple],
              device: torch.device) -> Shared:
        """This rank's share of data every rank holds whole: a contiguous slice of each
        chunk (so every rank runs as many forwards, as FSDP's all-gathers need)."""
        mine, columns, start = [], [], 0
        for chunk in chunks:
            n = len(chunk[1])
            lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
            mine.append(batches.take([chunk], lo, hi))
            columns.append(torch.arange(start + lo, start + hi, device=device))
            start += n
        return Shared(mine, torch.cat(columns), start)

    def step_batch(self, loss: float, chunks: list[tuple], n: int,
                   device: torch.device) -> tuple[float, Shared, int]:
        """(global mean loss, this rank's chunks as a share of the global batch, global
        batch size) from every rank's loss and batch, by one all-gather.

        Raises: ConfigError (on every rank alike) when the ranks' batches have different
        numbers of chunks: each chunk is one forward of the sharded model on every rank.
        """
        count = sum(len(y) for _, y in chunks)
        mine = torch.tensor([loss * count, count, len(chunks), n], dtype=torch.float64,
                            device=self.device)
        every = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(every, mine, group=self.group)
        table = torch.stack(every).cpu()
        if len(set(table[:, 2].tolist())) > 1:
            raise ConfigError(f"Walk on a sharded (FSDP2) model: expected as many chunks in "
                              f"every rank's batch, got {[int(c) for c in table[:, 2]]}")
        offset, total = int(table[: self.rank, 1].sum()), int(table[:, 1].sum())
        index = torch.arange(offset, offset + count, device=device)
        mean = float(table[:, 0].sum()) / total if total else float("nan")
        return mean, Shared(chunks, index, total), int(table[:, 3].sum())


class ShardedEvaluator(LossEvaluator):
    """Per-example losses at flat points of local shards, on a sharded scratch model.

    `sweep` writes each point into the scratch model's local shards and runs its forward on
    this rank's share of the data; one all-reduce per sweep assembles the (count, N) losses
    of all ranks. Sources are given whole on every rank (each keeps its share); the step's
    batch comes as a `Shared` from `Ranks.step_batch`. Derivatives (`model_fn`, and so
    `hessian`, `gradients`, `directional_derivative`, `loss_function`) are refused.

    Args:
        scratch: the second sharded instance (its parameters are overwritten; its BatchNorm
            and dropout follow `bn_policy` while probing).
        layout: the local layout (`local_layout`), equal for the model and the scratch.
        ranks: the mesh's collectives.
        the rest: as `LossEvaluator`.
    """

    def __init__(self, scratch: torch.nn.Module, layout: ParamLayout, ranks: Ranks,
                 batches: BatchFormat | None = None, bn_policy: str = "batch",
                 sources: dict[str, list[tuple]] | None = None, memory_format: str = "auto",
                 autocast: str = "off"):
        super().__init__(scratch, layout, batches, bn_policy, None, memory_format, autocast)
        self.ranks = ranks
        self.sources = {k: ranks.share(self.batches, list(v), self.scratch.device)
                        for k, v in (sources or {}).items()}
        self._params = params_of(scratch)  # the sharded DTensors (mesh_of resharded it)
        self._groups = fsdp_modules(scratch)
        self._views = layout.views_list(self.scratch)

    @torch.no_grad()
    def sweep(self, place: Callable[[int], object], count: int, data: Data) -> torch.Tensor:
        share = self.sources[data] if isinstance(data, str) and data in self.sources else data
        if not isinstance(share, Shared):
            raise ConfigError(f"sharded evaluator: expected a source among "
                              f"{sorted(self.sources)} or the step's batch, got {data!r}")
        shards = [p.to_local() for p in self._params]

        def put(i: int) -> None:
            place(i)
            for module in self._groups:  # the last point's unsharded copies are stale
                module.reshard()
            torch._foreach_copy_(shards, self._views)

        run = _Sweep(self, put, count, self._for_sweep(data if isinstance(data, str)
                                                       else list(share)))
        with self.bn.probing():
            run()
        out = self._losses_out(count, share.total).zero_()
        out.index_copy_(1, share.index, run.losses())
        return self.ranks.sum_(out)

    def same_point(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        return self.ranks.all(a.equal(b))

    def model_fn(self, theta: torch.Tensor, data: Data, twice: bool = True):
        raise ConfigError("sharded evaluator: expected no-grad sweeps only (derivatives "
                          "need functional_call, which FSDP2 modules refuse), got a "
                          "derivative")
