"""`Walk`: run probes around any optimizer step, in the trainers or in a user's own loop.

    walk = Walk(model, probes="line", probe_set=(x_probe, y_probe))
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        walk.before_step(loss, (x, y))   # snapshots theta_t and g_t
        optimizer.step()
        walk.after_step(optimizer)       # u_t = theta_{t+1} - theta_t; probes run here
    walk.table()                         # one row per step, or see the run store

or, in one line per step: `loss = walk.step(optimizer, x, y)` (which trains on the walk's
loss_fn, the one its probes measure; `walk.step(optimizer, batch)` for a dict batch).

A batch is (x, y) by default; dict batches (`labels=`) and models that compute their own
loss (`per_example_loss=`) go through one adapter, `sgdwalk.probes.batch`. With a
`torch.amp.GradScaler`, give `before_step` the scaler and the optimizer: the walk then
measures the unscaled gradient (or use `attach`, whose hooks fire after the unscaling).

The walk only copies parameters into its own buffers and evaluates moved parameters on
scratch copies, so the trajectory is bit-identical with and without it. It runs each
probe after the probes it requires, whatever order they were given in.

A model sharded by FSDP2 (`fully_shard`) is walked on its local shards, with a second
sharded instance for the forwards at moved points: `Walk(model, ..., scratch=other)`, on
every rank, each rank giving its own batch and loss (`sgdwalk.probes.sharded`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from sgdwalk.errors import ConfigError
from sgdwalk.functional.flat import ParamLayout, params_of
from sgdwalk.functional.hvp import StepGraph
from sgdwalk.losses import Loss, cross_entropy
from sgdwalk.probes.base import Probe
from sgdwalk.probes.batch import BatchFormat, batch_format
from sgdwalk.probes.context import StepContext
from sgdwalk.probes.evaluator import LossEvaluator


class Walk:
    """Measure every step of an optimisation with a list of probes.

    Args:
        model: the module being trained.
        probes: a preset name (see `sgdwalk.probes.presets`), a WalkConfig, or probes (run
            in an order where each follows the probes it `requires`).
        loss_fn: (output, target) -> per-example losses (N,): `sgdwalk.losses.cross_entropy`
            (default), `sgdwalk.losses.mse`, or one's own (reduction="none"). `step` trains
            on its mean and every probe measures it; a reducing loss is refused at first use.
        labels: batches are dicts (Hugging Face style): the key of the targets; the model
            is called on the other keys, `loss_fn(model(**others), batch[labels])`.
        per_example_loss: (model, batch) -> per-example losses (N,), in place of loss_fn
            and labels, for any batch (dict, tuple); `sgdwalk.probes.batch.model_loss`
            reads a model's own `model(**batch).loss`, which must then be per-example.
        probe_set: the fixed probe set: one batch (split into chunks of probe_batch), a
            list of batches (chunks as given), or an object with .x and .y tensors.
        heldout: the same for held-out data (line source "heldout").
        probe_batch: chunk size for a probe set given as one batch.
        bn_policy: BatchNorm policy while probing: "batch" | "recalibrate" | "eval"
            (docs/bn_policy.md); None: the WalkConfig's when `probes` is one, else "batch".
        sink: callable(step, values) receiving each step's values (a RunStore's `log`);
            without one, values are kept in memory and returned by `table()`.
        steps_per_epoch: for epoch-window schedules and the `epoch` field of contexts.
        seed: seed of the generator reserved for probes.
        memory_format: of 4-d inputs in the evaluator's no-grad sweeps: "auto" (channels_last
            for a conv net on CPU: about 2x faster there, equal up to float32 round-off),
            "contiguous" (bit for bit the training forward's kernels) or "channels_last".
        probe_autocast: "off" | "bf16": the evaluator's no-grad sweeps under bfloat16
            autocast (docs/metrics.md states its error); None: the WalkConfig's when
            `probes` is one, else "off".
        scratch: for a model sharded by FSDP2 only: a second instance made by the same
            factory and sharded the same way, whose parameters the line and economy probes
            overwrite (`sgdwalk.probes.sharded`; only trajectory, economy and line run).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        probes="cheap",
        loss_fn: Loss = cross_entropy,
        labels: str | None = None,
        per_example_loss: Callable | None = None,
        probe_set=None,
        heldout=None,
        probe_batch: int = 256,
        bn_policy: str | None = None,
        sink: Callable[[int, dict], None] | None = None,
        steps_per_epoch: int = 1,
        seed: int = 0,
        memory_format: str = "auto",
        probe_autocast: str | None = None,
        scratch: torch.nn.Module | None = None,
    ):
        from sgdwalk.probes import sharded
        from sgdwalk.probes.presets import build_probes

        self.model = model
        mesh = sharded.mesh_of(model)
        if mesh is None and scratch is not None:
            raise ConfigError("Walk: expected scratch= only with a model sharded by FSDP2 "
                              "(DTensor parameters), got a model of plain tensors")
        self.layout = ParamLayout.of(model) if mesh is None else sharded.local_layout(model)
        self.steps_per_epoch = steps_per_epoch
        self.probes: list[Probe] = run_order(
            probes if isinstance(probes, (list, tuple)) else build_probes(probes, steps_per_epoch)
        )
        self.batches: BatchFormat = batch_format(loss_fn, labels, per_example_loss)
        sources = {}
        if probe_set is not None:
            sources["probe"] = _chunks(self.batches, probe_set, probe_batch)
        if heldout is not None:
            sources["heldout"] = _chunks(self.batches, heldout, probe_batch)
        bn_policy = bn_policy or getattr(probes, "bn_policy", "batch")
        autocast = probe_autocast or getattr(probes, "probe_autocast", "off")
        # None: one process holds whole parameters; else the collectives of the shards' mesh
        self.ranks: sharded.Ranks | None = None
        if mesh is None:
            self.evaluator = LossEvaluator(model, self.layout, self.batches, bn_policy,
                                           sources, memory_format, autocast)
        else:
            sharded.check_walk(self.probes, bn_policy, model, scratch, mesh)
            self.ranks = sharded.Ranks(mesh)
            self.evaluator = sharded.ShardedEvaluator(
                scratch if scratch is not None else model, self.layout, self.ranks,
                self.batches, bn_policy, sources, memory_format, autocast)
        _check_sources(self.probes, self.evaluator.sources)
        self.sink = sink
        self.rows: list[tuple[int, dict]] = []
        self.step_count = 0
        # on the CPU whatever the model's device: the same seed draws the same random starts
        # (Lanczos) on every device, which the solvers then move to the model's
        self.generator = torch.Generator().manual_seed(seed)
        like = self.evaluator.scratch
        self._theta, self._theta_next = self.layout.empty(like), self.layout.empty(like)
        self._grad, self._update = self.layout.empty(like), self.layout.empty(like)
        # the parameters and shaped views of the flat buffers, found once
        self._params = params_of(model)
        self._views = {
            id(flat): self.layout.views_list(flat)
            for flat in (self._theta, self._theta_next, self._grad)
        }
        self._pending: tuple | None = None
        self._step_graph = None  # the graph of the pending step, when the loop kept it
        self._graph: StepGraph | None = None  # `step`'s own, made at its first use
        self._header_done = False

    # -- the two hooks ---------------------------------------------------------------
    def wants(self, step: int | None = None) -> bool:
        """Whether any probe needs this step's context (else the hooks are near free)."""
        step = self.step_count if step is None else step
        return any(p.tracks_history or p.schedule(step) for p in self.probes)

    def wants_step_graph(self) -> bool:
        """Whether the next step's backward should keep its graph for the probes (asked by
        the Trainer before each update): a probe that takes it (`Probe.takes_step_graph`)
        is due, and the step's Hessian is the one the probes measure: the training forward
        is the probing forward (no active dropout, BN absent or on batch statistics under
        the "batch" policy and in train mode), and the parameters have the walk's dtype."""
        step = self.step_count
        return (any(p.takes_step_graph and p.schedule(step) for p in self.probes)
                and self.evaluator.bn.reproduces_training_forward
                and self.evaluator.bn.bn_training
                and all(p.dtype == self._theta.dtype for p in self._params))

    def before_step(
        self, loss, batch, batch_size: int | None = None, full_batch: bool = False,
        scaler=None, optimizer: torch.optim.Optimizer | None = None, step_graph=None,
    ) -> None:
        """Call after backward, before `optimizer.step()`: snapshot theta_t and g_t.

        Args:
            loss: the mini-batch mean loss at theta_t (tensor or float).
            batch: the step's batch ((x, y), a dict, ...: see `labels` and
                `per_example_loss`), or a list of the micro-batches that made the gradient.
            batch_size: examples in the batch (default: counted from the chunks).
            full_batch: the batch is the whole training set (GD): it has no sampling noise.
            scaler, optimizer: the `torch.amp.GradScaler` that scaled the loss and the
                optimizer it will step. g_t is then the gradient the optimizer applies:
                divided by the scale, as `scaler.unscale_(optimizer)` divides it, unless
                that already ran; a step the scaler will skip (a gradient with inf or NaN)
                is not a walk step (`after_step` then returns {}).
            step_graph: the step's gradient with its graph kept (`functional.hvp.StepGraph`,
                from a loop that asked `wants_step_graph`); probes that take it read H u_t
                from it in `after_step`, before the loop frees it.
        """
        self._step_graph = step_graph
        chunks = self.batches.chunks(batch)
        if scaler is not None and self.ranks is not None:
            raise ConfigError("Walk.before_step: expected no scaler= on a sharded (FSDP2) "
                              "model, got one")
        inv_scale = _inv_scale(scaler, optimizer)
        if self.wants():
            self._flatten(self._params, self._theta)
            self._flatten(
                [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._params],
                self._grad,
            )
            if inv_scale is not None:
                self._grad.mul_(inv_scale)
        skipped = scaler is not None and not self.grads_finite()
        n = batch_size if batch_size is not None else sum(len(y) for _, y in chunks)
        loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
        self._pending = (float(loss), chunks, n, bool(full_batch), skipped)

    def after_step(self, optimizer: torch.optim.Optimizer | None = None, lr: float | None = None):
        """Call after `optimizer.step()`: run the scheduled probes; return their values."""
        if self._pending is None:
            raise RuntimeError("Walk.after_step: expected a before_step call first, got none")
        loss, chunks, n, full_batch, skipped = self._pending
        self._pending = None
        step_graph, self._step_graph = self._step_graph, None
        if skipped:
            return {}
        if not self._header_done:
            self._header_done = True
            header = {k: v for p in self.probes for k, v in p.header().items()}
            if header:
                self._emit(-1, header)
        step = self.step_count
        self.step_count += 1
        if not self.wants(step):
            return {}
        group = optimizer.param_groups[0] if optimizer is not None else {}
        if self.ranks is not None:  # the global batch: the ranks' batches in rank order
            loss, chunks, n = self.ranks.step_batch(loss, chunks, n, self._theta.device)
        self._flatten(self._params, self._theta_next)
        torch.sub(self._theta_next, self._theta, out=self._update)
        ctx = StepContext(
            step=step,
            epoch=step // self.steps_per_epoch,
            lr=float(lr if lr is not None else group.get("lr", float("nan"))),
            weight_decays=_weight_decays(optimizer, self._params),
            batch_size=n,
            loss=loss,
            theta=self._theta,
            theta_next=self._theta_next,
            update=self._update,
            grad=self._grad,
            batch=chunks,
            layout=self.layout,
            evaluator=self.evaluator,
            generator=self.generator,
            full_batch=full_batch,
            optimizer=optimizer,
            params=self._params,
            reduce=None if self.ranks is None else self.ranks.sum_,
            step_graph=step_graph,
        )
        values = self.observe(ctx)
        if values:
            self._emit(step, values)
        return values

    def observe(self, ctx: StepContext) -> dict:
        """Run the probes scheduled at ctx.step (and the history hooks of all of them)."""
        values: dict = {}
        with torch.random.fork_rng(devices=_cuda_devices(ctx.theta)):
            for probe in self.probes:
                if probe.schedule(ctx.step):
                    got = probe.observe(ctx)
                    ctx.results.update(got)
                    values.update(got)
            for probe in self.probes:
                probe.after(ctx)
        return values

    def attach(self, optimizer: torch.optim.Optimizer):
        """Run around every `optimizer.step()` through its step hooks (sgdwalk.probes.attach);
        returns the hooks, with `record(loss, batch)` and `remove()`."""
        from sgdwalk.probes.attach import attach

        return attach(self, optimizer)

    def step(self, optimizer, *batch) -> torch.Tensor:
        """One training step on the mean of the walk's per-example loss, with the walk
        around it: `step(optimizer, x, y)` or `step(optimizer, batch)`; returns the batch
        loss. At steps where a probe takes the step's graph (`wants_step_graph`) the
        backward keeps it for that probe (the same gradient) and frees it after the step."""
        batch = batch[0] if len(batch) == 1 else batch
        optimizer.zero_grad(set_to_none=True)
        fmt = self.batches
        graph = self._own_step_graph()
        with graph.recording() if graph is not None else contextlib.nullcontext():
            loss = torch.cat([fmt.losses(fmt.forward(self.model, x), y)
                              for x, y in fmt.chunks(batch)]).mean()
            if graph is None:
                loss.backward()
            else:  # the same gradient, its graph kept for the probes (see wants_step_graph)
                for p, g in zip(graph.params, graph.gradient(loss)):
                    p.grad = g
        try:
            self.before_step(loss.detach(), batch, step_graph=graph)
            if graph is not None:
                graph.freeze()
            optimizer.step()
            self.after_step(optimizer)
        finally:
            if graph is not None:
                graph.close()
        return loss.detach()

    def _own_step_graph(self):
        """`step`'s StepGraph when a probe wants it, in one process; else None."""
        if not self.wants_step_graph() or (torch.distributed.is_available()
                                           and torch.distributed.is_initialized()):
            return None
        if self._graph is None:  # one, reused: its copy of theta_t stays allocated
            self._graph = StepGraph(self._params)
        return self._graph

    def grads_finite(self) -> bool:
        """Whether every gradient of the walked parameters is finite (a GradScaler skips
        the step otherwise; on a sharded model: on every rank)."""
        if self.ranks is not None:
            return self.ranks.all(all(bool(p.grad.to_local().isfinite().all())
                                      for p in self._params if p.grad is not None))
        return all(bool(p.grad.isfinite().all()) for p in self._params if p.grad is not None)

    def _flatten(self, tensors: list[torch.Tensor], flat: torch.Tensor) -> None:
        if self.ranks is not None:  # DTensors: this rank's shards
            tensors = [t.to_local() for t in tensors]
        torch._foreach_copy_(self._views[id(flat)], [t.detach() for t in tensors])

    # -- results and state -----------------------------------------------------------
    def _emit(self, step: int, values: dict) -> None:
        if self.sink is not None:
            self.sink(step, values)
        else:
            self.rows.append((step, values))

    def table(self):
        """In-memory values as a DataFrame (index step); vectors as object columns."""
        import pandas as pd

        records = [{"step": s, **{k: _plain(v) for k, v in vals.items()}} for s, vals in self.rows]
        return pd.DataFrame.from_records(records).set_index("step") if records else pd.DataFrame()

    def state_dict(self) -> dict:
        return {
            "step_count": self.step_count,
            "generator": self.generator.get_state(),
            "probes": {f"{i}:{p.name}": p.state_dict() for i, p in enumerate(self.probes)},
        }

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.generator.set_state(state["generator"])
        for i, probe in enumerate(self.probes):
            probe.load_state_dict(state["probes"][f"{i}:{probe.name}"])


def run_order(probes: Sequence[Probe]) -> list[Probe]:
    """The probes in an order where each runs after the probes it requires: the given order
    wherever that allows (a stable topological sort).

    Raises: ConfigError when a required probe is missing or the requirements form a cycle.
    """
    names = [p.name for p in probes]
    for probe in probes:
        for name in probe.requires:
            if name not in names:
                raise ConfigError(f"Walk: probe {probe.name!r} requires {name!r}: expected it "
                                  f"among the probes, got {', '.join(names)}")
    order: list[Probe] = []
    done: set[str] = set()
    waiting = list(probes)
    while waiting:
        ready = next((p for p in waiting if done.issuperset(p.requires)), None)
        if ready is None:
            cycle = "; ".join(f"{p.name} requires {', '.join(p.requires)}" for p in waiting)
            raise ConfigError(f"Walk: expected requirements without a cycle, got {cycle}")
        order.append(ready)
        waiting.remove(ready)
        done.add(ready.name)
    return order


def _check_sources(probes: Sequence[Probe], available: dict) -> None:
    """Fail at construction, not mid-run, when a probe needs data the walk was not given."""
    given = {"probe": "probe_set", "heldout": "heldout"}
    for probe in probes:
        for source in getattr(probe, "sources", ()):
            if source != "batch" and source not in available:
                how = given.get(source, source)
                raise ConfigError(
                    f"Walk: probe {probe.name!r} evaluates on source {source!r}: expected "
                    f"Walk(..., {how}=...), got none (or drop {source!r} from line_sources)"
                )


def _chunks(batches: BatchFormat, data, size: int) -> list[tuple]:
    """One batch -> fixed chunks of `size` examples; a list of batches is kept as given."""
    if hasattr(data, "x") and hasattr(data, "y"):
        data = (data.x, data.y)
    chunks = batches.chunks(data)
    if len(chunks) != 1 or isinstance(data, list) and len(data) == 1:
        return chunks
    n = len(chunks[0][1])
    return [batches.take(chunks, i, min(i + size, n)) for i in range(0, n, size)]


def _inv_scale(scaler, optimizer) -> torch.Tensor | None:
    """1 / the scaler's scale as `GradScaler.unscale_` computes it (float32), or None when
    there is no scaler, it is disabled, or it has already unscaled this optimizer's
    gradients."""
    if scaler is None or not scaler.is_enabled():
        return None
    if optimizer is None:
        raise ConfigError("Walk.before_step: expected optimizer= with scaler= (to know "
                          "whether scaler.unscale_(optimizer) ran), got none")
    from torch.amp.grad_scaler import OptState

    # .get: reading the scaler's defaultdict must not add a state to it
    state = scaler._per_optimizer_states.get(id(optimizer))
    if state is not None and state["stage"] is not OptState.READY:
        return None
    scale = torch.tensor(scaler.get_scale(), dtype=torch.float64)
    return scale.reciprocal().float()


def _weight_decays(optimizer, params: list[torch.Tensor]) -> tuple[float, ...]:
    """Each parameter's weight decay from the optimizer's param groups, as it is now (a
    group's decay may change between steps); 0 for a parameter in no group."""
    groups = optimizer.param_groups if optimizer is not None else []
    by_id = {id(p): float(g.get("weight_decay", 0.0) or 0.0) for g in groups for p in g["params"]}
    return tuple(by_id.get(id(p), 0.0) for p in params)


def _cuda_devices(t: torch.Tensor) -> Sequence[int]:
    return [t.device.index or 0] if t.is_cuda else []


def _plain(v):
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
