"""The training loop: the one place an optimizer steps (SGD, full-batch GD, GD + noise).

One update, top to bottom in `Trainer.run`: the batch -> forward and backward (gradients of
the mean loss over the global batch, averaged over processes) -> `hooks.before_step` (the
walk snapshots theta_t and the true g_t) -> the gradient transforms (scale, clip, noise) ->
`optimizer.step()` -> `hooks.after_step` (theta_{t+1}: the probes run) -> the row -> the
evaluation, checkpoint and commit that are due.

The step's graph: at an update where the hooks ask for it (`StepHooks.wants_step_graph`:
the walk, when its curvature probe is due and the probes' Hessian is the training
forward's), the batch is one chunk and the run one process, the backward keeps its graph
(`functional.hvp.StepGraph`, the same gradient bit for bit) and the hooks get it in
`before_step(..., step_graph=)`; a probe then takes H u_t at theta_t after the step by one
more backward instead of its own forward and two backwards. The graph is freed when the
update ends. `step_graphs=False` never keeps it.

Row t of the metric store describes update t (theta_t -> theta_{t+1}): the batch loss f_t(0),
the lr applied (set from the step by `lr_at` when a schedule is given) and every probe value.
Evaluations (train/val/test loss and accuracy) are logged on the row of the last update
before them; the evaluation of theta_0 is logged at step -1.

A run is deterministic on CPU: data order, augmentation and noise come from generators
seeded by `train.seed` whose states go into every checkpoint, so a resumed run continues
exactly and rewrites any rows logged after the checkpoint with equal values.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sgdwalk.errors import SgdwalkWarning, StoreError
from sgdwalk.functional.hvp import StepGraph
from sgdwalk.train.batches import Batches, Chunks
from sgdwalk.train.cadence import Cadence
from sgdwalk.train.distributed import Parallel
from sgdwalk.train.hooks import NoHooks, StepHooks
from sgdwalk.train.resume_check import check_state
from sgdwalk.train.signals import StopOnSignals
from sgdwalk.train.transforms import Transform, chain


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | diverged | stopped | halted (a test's simulated kill)
    steps: int  # updates done
    final: dict  # the last evaluation made by this call ({} if none)


@dataclass(eq=False)
class Trainer:
    """One run's training state; `run(store)` trains until the end, a divergence or a stop.

    `store` is where rows, meta and checkpoints go (a RunStore, or anything with its `log`,
    `flush`, `update_meta`, `save_checkpoint` and `latest_checkpoint`).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batches: Batches
    cadence: Cadence
    transforms: Transform = field(default_factory=chain)
    hooks: StepHooks = field(default_factory=NoHooks)
    evaluate: Callable[[], dict] = dict  # evaluation of the current parameters
    loss_fn: Callable = F.cross_entropy  # the training loss: (output, y) -> mean over the batch
    lr_at: Callable[[int], float] | None = None  # the lr of update t (a schedule); None: as is
    par: Parallel = field(default_factory=Parallel)
    keep_checkpoints: int = 2
    name: str = "run"  # the progress bar's label
    progress: bool = True  # show a progress bar when `run` is not told
    facts: dict = field(default_factory=dict)  # written to meta.json when training starts
    # keep the step's graph where the hooks ask (`StepHooks.wants_step_graph`); False: never
    step_graphs: bool = True
    step: int = field(default=0, init=False)  # updates done
    transform_state: Any = field(default=None, init=False)
    store: Any = field(default=None, init=False)
    last_finite: dict = field(default_factory=dict, init=False)  # last finite loss, its step
    _graph: StepGraph | None = field(default=None, init=False, repr=False)

    def run(self, store, progress: bool | None = None,
            halt_at_step: int | None = None) -> Outcome:
        """Train from the newest checkpoint in `store` (theta_0 when there is none)."""
        self.store = store
        self._restore_or_start()
        show = (self.progress if progress is None else progress) and self.par.is_main
        bar = tqdm(total=self.cadence.total_steps, initial=self.step, unit="step",
                   disable=not show, dynamic_ncols=True, desc=self.name)
        status, final = "completed", {}
        with StopOnSignals() as stop:
            while self.step < self.cadence.total_steps:
                if halt_at_step is not None and self.step >= halt_at_step:
                    status = "halted"  # tests: behave like a kill, nothing more is written
                    break
                if self.par.any(stop.requested):
                    self.store.flush()
                    self._checkpoint()
                    status = "stopped"
                    break
                loss = self.update(self.batches.batch(self.step))
                if not math.isfinite(loss):
                    self._record_divergence(loss)
                    status = "diverged"
                    break
                self.store.log(self.step, {"loss": loss,
                                           "lr": self.optimizer.param_groups[0]["lr"]})
                self.last_finite = {"loss": loss, "step": self.step}
                self.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", epoch=self.cadence.epoch(self.step),
                                refresh=False)
                final = self._on_cadence() or final
        bar.close()
        return Outcome(status, self.step, final)

    def update(self, chunks: Chunks) -> float:
        """One update on the global batch `chunks`: forward and backward, the lr of the step,
        `hooks.before_step`, the transforms, `optimizer.step()`, `hooks.after_step`. Returns
        the batch loss; a non-finite one returns before anything else (nothing stepped)."""
        n = sum(len(y) for _, y in chunks)
        graph = self._step_graph(chunks)
        try:
            loss = self._forward_backward(chunks, n, graph)
            if not math.isfinite(loss):
                return loss
            if self.lr_at is not None:  # a pure function of the step: resumes exactly
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr_at(self.step)
            shared = {} if graph is None else {"step_graph": graph}
            self.hooks.before_step(loss, chunks, n, full_batch=self.batches.full_batch, **shared)
            self.transform_state = self.transforms.apply(self._grads(), self.transform_state)
            if graph is not None:
                graph.freeze()  # theta_t, for the hooks' products after the step
            self.optimizer.step()
            self.hooks.after_step(self.optimizer)
        finally:
            if graph is not None:
                graph.close()  # the step's graph is freed with the step
        return loss

    def _forward_backward(self, chunks: Chunks, n: int, graph: StepGraph | None = None
                          ) -> float:
        """Gradients of the mean loss over the global batch of n examples; its value.
        With `graph`, the backward keeps its graph there (the same gradient, bit for bit)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64)
        with graph.recording() if graph is not None else contextlib.nullcontext():
            for x, y in self.par.share(chunks, self.batches.full_batch):
                chunk_mean = self.loss_fn(self.model(x), y)
                # lr is the step on the mean loss over the whole (global) batch
                scaled = chunk_mean * (len(y) * self.par.world / n)
                if graph is None:
                    scaled.backward()
                else:  # one chunk (`_step_graph`): .grad is empty, as backward would find it
                    for p, g in zip(graph.params, graph.gradient(scaled)):
                        p.grad = g
                loss_sum += chunk_mean.detach().double().cpu() * len(y)
        self.par.average_gradients(self.model.parameters())
        return float(self.par.mean_(loss_sum)) * self.par.world / n

    # -- the step's graph, shared with the hooks -------------------------------------------
    def _step_graph(self, chunks: Chunks) -> StepGraph | None:
        """A StepGraph for this update when the hooks ask for one (`wants_step_graph`) and
        its Hessian is the hooks' batch loss's: one chunk in one process. Else None: the
        plain backward."""
        wants = getattr(self.hooks, "wants_step_graph", None)
        if (not self.step_graphs or wants is None or len(chunks) != 1 or self.par.active
                or not wants()):
            return None
        if self._graph is None:  # one, reused: its copy of theta_t stays allocated
            self._graph = StepGraph(self._params())
        return self._graph

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.model.parameters() if p.grad is not None]

    def _on_cadence(self) -> dict | None:
        """Evaluate, checkpoint or commit rows if due now; the evaluation made, if any."""
        due, final = self.cadence.due(self.step), None
        if due.evaluate:
            final = {"epoch": self.cadence.epoch(self.step), **self._evaluation()}
            self.store.log(self.step - 1, final)
            self.store.update_meta(final=final)
        if due.checkpoint:
            self._checkpoint()
        elif due.flush:
            self.store.flush()
        return final

    def _evaluation(self) -> dict:
        return self.evaluate() if self.par.is_main else {}  # only rank 0 logs it

    def _restore_or_start(self) -> None:
        found = self.store.latest_checkpoint()
        threads = torch.get_num_threads()
        run = f"run {getattr(self.store, 'path', '?')}"
        started = {}  # meta.json facts of a run's start, written with its "running" status
        if found is not None:
            step, state = found
            where = f"{run}: checkpoint step-{step:08d}.pt"
            check_state(state, model=self.model, optimizer=self.optimizer,
                        n_train=len(self.batches.y), total_steps=self.cadence.total_steps,
                        file_step=step, where=where)
            self.load_state_dict(state, where)
            if state["threads"] != threads:
                saved = state["threads"]
                warnings.warn(SgdwalkWarning(
                    f"{run}: resumed on {threads} torch threads, checkpointed on {saved}: rows "
                    f"from step {step} on may differ from an uninterrupted run by round-off "
                    f"(set OMP_NUM_THREADS={saved} for exact resumption)"), stacklevel=2)
        else:  # theta_0: the transforms' state (GD + noise's std), its evaluation, step 0
            self.transform_state = self.transforms.init(self._params())
            once = self.transforms.record(self.transform_state)
            if once:
                self.store.update_meta(**once)
                self.store.log(-1, once)
            self.store.log(-1, {"epoch": 0, **self._evaluation()})
            started["torch_threads"] = threads  # the count the run started on
            self._checkpoint()
        self.par.barrier()  # every rank has loaded before rank 0 writes a new checkpoint
        self.store.update_meta(status="running", steps_per_epoch=self.cadence.steps_per_epoch,
                               total_steps=self.cadence.total_steps, processes=self.par.world,
                               **started, **self.facts)

    def _params(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _record_divergence(self, loss: float) -> None:
        self.store.log(self.step, {"loss": loss, "diverged": 1})
        self.store.update_meta(diverged_step=self.step, last_finite=self.last_finite)

    def _checkpoint(self) -> None:
        self.store.save_checkpoint(self.step, self.state_dict(), keep=self.keep_checkpoints)

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "data": self.batches.state_dict(),
                "transforms": self.transform_state, "hooks": self.hooks.state_dict(),
                "rng": rng, "last_finite": dict(self.last_finite),
                "threads": torch.get_num_threads()}

    def load_state_dict(self, state: dict, where: str = "checkpoint") -> None:
        """Restore `state_dict()` (checked by `resume_check.check_state` first when it comes
        from a file). Parts whose structure only their owner knows (the walk's probes, the
        generator states) that fail to load are one StoreError line naming the part."""
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        # hyper-parameters (lr, momentum, ...) come from the config, not the checkpoint: the
        # same values on a resume, the edited ones in a fork
        configured = [{k: v for k, v in g.items() if k != "params"}
                      for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, hyper in zip(self.optimizer.param_groups, configured, strict=True):
            group.update(hyper)
        self.transform_state = state["transforms"]
        self.last_finite = dict(state["last_finite"])
        for part, load in (("data", self.batches.load_state_dict),
                           ("hooks", self.hooks.load_state_dict),
                           ("rng", lambda rng: torch.set_rng_state(rng["torch"]))):
            try:
                load(state[part])
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
                raise StoreError(f"{where}: {part}: expected the state this run saves, got one "
                                 f"that does not load ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:120] if str(exc) else ''})"
                                 ) from None
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
