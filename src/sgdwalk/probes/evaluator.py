"""Losses at moved parameters, evaluated without touching the model being trained.

The evaluator owns one scratch flat parameter vector. Moving to theta + a*u is one fused
`torch.add` (or `torch.lerp`, exact at both ends) into the scratch vector; the model is then
run with `torch.func.functional_call` on views of it, so the trained parameters are never
written. A sweep over many points (a line curve, a segment) reparametrises the model once
and only rewrites the scratch vector between points, so each point costs the forwards and
nothing else.

BatchNorm policy while probing (docs/bn_policy.md):
- "batch" (default): BN layers normalise with the statistics of each fixed batch (train
  mode) and, while probing, do not track running statistics, so the model's are untouched.
  Every point sees the same batch compositions, so differences along the line are exact.
- "recalibrate": at each point, fresh running statistics are accumulated over the source's
  batches, then the source is evaluated in eval mode (about twice the cost).
- "eval": eval mode with the model's current running statistics. Cheap, but the statistics
  belong to theta_t, not to the moved point; not the default for that reason.
Other modules (dropout) are always in eval mode while probing.

Memory format of no-grad sweeps (`memory_format`): on CPU, a network with 2-d convolutions
is probed with channels_last inputs by default ("auto"). PyTorch's CPU max-pool, BatchNorm
and ReLU kernels are 2-7x faster on channels_last tensors, which makes a VGG-11 forward
about 2x faster (benchmarks/line_floor.py; docs/performance.md). The numbers are those of
the contiguous forward up to float32 round-off (a different summation order), not bit for
bit. Derivatives (Hessian-vector products, gradients, `jvp`) keep the inputs as given: their
channels_last form was slower or no faster. A model that cannot take channels_last inputs
(e.g. it calls `.view` on a feature map) is detected by a two-example trial forward at the
first sweep and probed with contiguous inputs.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence

import torch
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from sgdwalk.errors import ConfigError
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.functional.hvp import grad_and_hvp

Chunks = Sequence[tuple[torch.Tensor, torch.Tensor]]
BN_POLICIES = ("batch", "recalibrate", "eval")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")


def per_example_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each example, l_j = logsumexp(z_j) - z_{j, y_j}, shape (N,).

    The value of `F.cross_entropy(logits, y, reduction="none")` up to round-off, and 2-4x
    faster on CPU for few classes (measured with torch 2.13: 10 classes, 6,656 rows).
    Rows are independent, which lets a sweep apply it once to every point's logits.
    """
    return torch.logsumexp(logits, dim=1) - logits.gather(1, y.unsqueeze(1)).squeeze(1)


ROWWISE_LOSSES = {per_example_cross_entropy}  # loss_fns a sweep may apply once to all points
_BATCHED_LOSS_MAX = 2**22  # most logits a sweep buffers to apply the loss once (16 MiB f32)


class _Scope(torch.nn.Module):
    """Holds the model so that one `functional_call` covers a whole sweep of forwards."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, body: Callable[[], torch.Tensor]) -> torch.Tensor:
        return body()


class LossEvaluator:
    """Per-example losses of `model` at arbitrary flat parameters, on fixed data chunks.

    Args:
        model: the trained module; only its `training` flags are toggled (and restored).
        layout: where each trainable parameter lives in a flat vector.
        loss_fn: (output, target) -> per-example losses (N,) or a scalar mean.
        bn_policy: "batch" | "recalibrate" | "eval".
        sources: named data, each a list of (x, y) chunks on the model's device.
        memory_format: of 4-d inputs in no-grad sweeps: "channels_last", "contiguous" (as
            given), or "auto": channels_last for a CPU model with Conv2d layers.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layout: ParamLayout,
        loss_fn: Callable = per_example_cross_entropy,
        bn_policy: str = "batch",
        sources: dict[str, Chunks] | None = None,
        memory_format: str = "auto",
    ):
        if bn_policy not in BN_POLICIES:
            raise ConfigError(f"bn_policy: expected one of {BN_POLICIES}, got {bn_policy!r}")
        if memory_format not in MEMORY_FORMATS:
            raise ConfigError(
                f"memory_format: expected one of {MEMORY_FORMATS}, got {memory_format!r}"
            )
        self.model = model
        self.layout = layout
        self.loss_fn = loss_fn
        self.bn_policy = bn_policy
        self.sources: dict[str, list] = {k: list(v) for k, v in (sources or {}).items()}
        first = next(p for p in model.parameters() if p.requires_grad)
        self.scratch = layout.empty(first.detach())
        self._scratch_views = layout.views(self.scratch)
        self._modules = list(model.modules())
        self._bns = [m for m in self._modules if isinstance(m, _BatchNorm)]
        self._bn_set = set(self._bns)
        self.has_dropout = any(isinstance(m, _DropoutNd) for m in self._modules)
        self._pure = (bn_policy != "eval" or not self._bns) and all(
            isinstance(m, _BatchNorm) for m in self._modules for _ in m.buffers(recurse=False)
        )
        convs = any(isinstance(m, torch.nn.Conv2d) for m in self._modules)
        self.channels_last = memory_format == "channels_last" or (
            memory_format == "auto" and convs and self.scratch.device.type == "cpu"
        )
        self._format_checked = memory_format != "auto"  # "auto" tries it once
        self._formatted: dict[int, tuple[Chunks, list]] = {}  # id(chunks) -> (chunks, copy)
        # Scratch copies of the BN buffers, where "recalibrate" accumulates fresh statistics.
        self._buffers = {
            f"{name}.{b}" if name else b: buf.detach().clone()
            for name, m in model.named_modules()
            if isinstance(m, _BatchNorm)
            for b, buf in m.named_buffers(recurse=False)
        }
        # Tied parameters appear once in the layout; give every alias the same view, so the
        # model can be reparametrised without functional_call's per-call tie detection.
        canonical = {id(p): n for n, p in model.named_parameters()}
        self._aliases = [
            (n, canonical[id(p)])
            for n, p in model.named_parameters(remove_duplicate=False)
            if canonical[id(p)] != n and canonical[id(p)] in self._scratch_views
        ]
        state = self._with_aliases(self._scratch_views)
        if self._bns and bn_policy == "recalibrate":
            state.update(self._buffers)
        self._scope = _Scope(model)
        self._scope_state = {f"model.{k}": v for k, v in state.items()}

    @property
    def points_are_pure(self) -> bool:
        """Whether probing losses depend on the parameters and the data only.

        Not under the "eval" BN policy (the model's running statistics move with training),
        nor for a model with buffers outside BN layers (they might too): then the losses at
        one point, measured at two steps, may differ, and must not be reused.
        """
        return self._pure

    @property
    def reproduces_training_forward(self) -> bool:
        """Whether a probing forward computes what the training forward computed.

        True without dropout and with BN absent or under the "batch" policy: then f(0) on
        the step's batch is the training loss (up to round-off of the mean, and of the
        kernels when a conv net is probed in channels_last: see the module docstring).
        """
        return not self.has_dropout and (not self._bns or self.bn_policy == "batch")

    # -- points ----------------------------------------------------------------------
    def move(self, theta: torch.Tensor, u: torch.Tensor | None = None, a: float = 0.0):
        """Set the scratch parameters to theta + a*u and return them (flat)."""
        if u is None or a == 0.0:
            self.scratch.copy_(theta)
        else:
            torch.add(theta, u, alpha=a, out=self.scratch)
        return self.scratch

    # -- no-grad evaluation ----------------------------------------------------------
    @torch.no_grad()
    def sweep(self, place: Callable[[int], object], count: int, chunks: Chunks) -> torch.Tensor:
        """Per-example losses at `count` points: row i after `place(i)` set the scratch.

        The model is reparametrised once for all points; between points only the scratch
        vector changes (in place), so a point costs its forwards.

        Returns: (count, N) losses in the model's dtype, N the examples in all chunks.
        """
        chunks = self._sweep_chunks(chunks)
        n = sum(len(y) for _, y in chunks)
        recalibrate = self.bn_policy == "recalibrate" and bool(self._bns)
        batched = [self.loss_fn in ROWWISE_LOSSES]  # logits kept to apply the loss once
        kept: list[torch.Tensor] = []
        out = None if batched[0] else self._losses_out(count, n)

        def keep(i: int, j: int, z: torch.Tensor, y: torch.Tensor) -> None:
            nonlocal out
            if batched[0] and not kept:
                batched[0] = count * n * z[0].numel() <= _BATCHED_LOSS_MAX
                if not batched[0]:
                    out = self._losses_out(count, n)
            if batched[0]:
                kept.append(z)
            else:
                out[i, j : j + len(y)] = self._per_example(z, y)

        def body():
            for i in range(count):
                place(i)
                if recalibrate:
                    self._recalibrate_scratch(chunks)
                j = 0
                for x, y in chunks:
                    keep(i, j, self.model(x), y)
                    j += len(y)
            return out

        with self._probing():
            functional_call(self._scope, self._scope_state, (body,), tie_weights=False)
        if kept:  # rows in (point, chunk) order, as y_all repeated
            z = torch.cat(kept) if len(kept) > 1 else kept[0]
            y_all = chunks[0][1] if len(chunks) == 1 else torch.cat([y for _, y in chunks])
            y_all = y_all.repeat(count) if count > 1 else y_all
            losses = self._per_example(z, y_all).view(count, n)
            if losses.dtype == self.scratch.dtype:
                return losses
            out = self._losses_out(count, n)
            out.copy_(losses)
        return out if out is not None else self._losses_out(count, n)

    def _losses_out(self, count: int, n: int) -> torch.Tensor:
        return torch.empty(count, n, dtype=self.scratch.dtype, device=self.scratch.device)

    def losses(self, chunks: Chunks, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example losses (N,) over all chunks at `flat` (default: the scratch point)."""
        if flat is not None and flat is not self.scratch:
            self.scratch.copy_(flat)
        return self.sweep(lambda i: None, 1, chunks)[0]

    def line(
        self,
        theta: torch.Tensor,
        u: torch.Tensor,
        grid: Sequence[float],
        chunks: Chunks,
        end: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-example losses on the line theta + a*u at each grid point: shape (K, N).

        With `end` = theta + u given (theta_{t+1}), points are `torch.lerp(theta, end, a)`,
        exactly theta at a = 0 and exactly `end` at a = 1.
        """
        points = [float(a) for a in grid]
        if end is None:
            return self.sweep(lambda i: self.move(theta, u, points[i]), len(points), chunks)
        return self.sweep(
            lambda i: torch.lerp(theta, end, points[i], out=self.scratch), len(points), chunks
        )

    def segment(
        self, start: torch.Tensor, stop: torch.Tensor, positions: Sequence[float], chunks: Chunks
    ) -> torch.Tensor:
        """Per-example losses at (1 - b) start + b stop for each b: shape (len(positions), N)."""
        return self.line(start, None, positions, chunks, end=stop)

    # -- differentiable evaluation ---------------------------------------------------
    def loss_function(self, chunks: Chunks) -> Callable[[torch.Tensor], torch.Tensor]:
        """theta_flat -> mean loss over `chunks`, differentiable (for HVPs and Lanczos).

        Builds one graph over all chunks; `grad_and_hvp` and `gradients` accumulate chunk
        by chunk instead. Under "recalibrate" the statistics are computed without gradient
        (held fixed at the point for derivatives).
        """
        n = sum(len(y) for _, y in chunks)

        def f(theta_flat: torch.Tensor) -> torch.Tensor:
            params = self.layout.views(theta_flat)
            with self._probing():
                buffers = self._buffers_for(params, chunks)
                total = sum(self._loss(params, buffers, x, y).sum() for x, y in chunks)
            return total / n

        return f

    def grad_and_hvp(
        self, chunks: Chunks, theta: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient and Hessian-vector product of the mean loss over `chunks` at theta.

        L = (1/N) sum_c sum_{j in c} l_j, so g and H v are sums of per-chunk terms; each
        chunk builds and frees its own graph (memory of one chunk, not the whole source).

        Returns: (g, Hv), both (P,) detached, in theta's dtype.
        """
        n = sum(len(y) for _, y in chunks)
        g, hv = torch.zeros_like(theta), torch.zeros_like(theta)
        buffers = self._fixed_buffers(theta, chunks)
        for x, y in chunks:
            gc, hc = grad_and_hvp(self._chunk_sum(x, y, buffers, n), theta, v)
            g += gc
            hv += hc
        return g, hv

    def gradients(self, groups: Sequence[Chunks], theta: torch.Tensor) -> torch.Tensor:
        """Gradients of the mean loss of each group of chunks at theta: (len(groups), P)."""
        out = torch.empty(len(groups), theta.numel(), dtype=theta.dtype, device=theta.device)
        for i, chunks in enumerate(groups):
            n = sum(len(y) for _, y in chunks)
            buffers = self._fixed_buffers(theta, chunks)
            x_ = theta.detach().requires_grad_(True)
            with torch.enable_grad():
                total = sum(self._chunk_sum(x, y, buffers, n)(x_) for x, y in chunks)
                (out[i],) = torch.autograd.grad(total, x_)
        return out

    def directional_derivative(
        self, chunks: Chunks, theta: torch.Tensor, v: torch.Tensor
    ) -> tuple[float, float]:
        """(L(theta), <grad L(theta), v>) of the mean loss over `chunks`, by forward-mode AD.

        One `torch.func.jvp` per chunk: about the cost of two forwards, no backward.
        """
        n = sum(len(y) for _, y in chunks)
        buffers = self._fixed_buffers(theta, chunks)
        value, slope = 0.0, 0.0
        for x, y in chunks:
            with warnings.catch_warnings():  # torch 2.13's jvp scripts a helper internally
                warnings.filterwarnings("ignore", ".*torch.jit.script", DeprecationWarning)
                f, df = torch.func.jvp(
                    self._chunk_sum(x, y, buffers, n), (theta.detach(),), (v.detach(),)
                )
            value += float(f)
            slope += float(df)
        return value, slope

    # -- internals -------------------------------------------------------------------
    def _sweep_chunks(self, chunks: Chunks) -> Chunks:
        """`chunks` with 4-d inputs in the sweep's memory format (copied once per list).

        The copy of a source's chunks is kept for the evaluator's life; of any other list
        (the step's batch) only the latest is kept, so that the economy forward and the batch
        line of one step share it.
        """
        if not self.channels_last:
            return chunks
        hit = self._formatted.get(id(chunks))
        if hit is not None and hit[0] is chunks:
            return hit[1]
        fast = [(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x, y)
                for x, y in chunks]
        if not self._format_checked:
            self._format_checked = True
            self.channels_last = self._takes_channels_last(fast)
            if not self.channels_last:
                return chunks
        sources = {id(v) for v in self.sources.values()}
        if id(chunks) not in sources:
            self._formatted = {k: v for k, v in self._formatted.items() if k in sources}
        self._formatted[id(chunks)] = (chunks, fast)
        return fast

    def _takes_channels_last(self, chunks: Chunks) -> bool:
        """Whether the model runs on channels_last inputs: a two-example trial forward."""
        x = next((x for x, _ in chunks if x.dim() == 4), None)
        if x is None:
            return False
        try:
            with torch.no_grad(), self._probing():
                self.model(x[:2])
        except RuntimeError:  # e.g. `.view` of a channels_last feature map
            return False
        return True

    def _per_example(self, out, y) -> torch.Tensor:
        loss = self.loss_fn(out, y)
        return loss.expand(len(y)) if loss.dim() == 0 else loss

    def _loss(self, params, buffers, x, y) -> torch.Tensor:
        state = {**self._with_aliases(params), **buffers}
        return self._per_example(functional_call(self.model, state, (x,), tie_weights=False), y)

    def _with_aliases(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self._aliases:
            return params
        return {**params, **{alias: params[name] for alias, name in self._aliases}}

    def _chunk_sum(self, x, y, buffers, n: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """theta_flat -> (sum of the chunk's per-example losses) / n, differentiable."""

        def f(theta_flat: torch.Tensor) -> torch.Tensor:
            with self._probing():
                return self._loss(self.layout.views(theta_flat), buffers, x, y).sum() / n

        return f

    def _fixed_buffers(self, theta, chunks) -> dict[str, torch.Tensor]:
        """Buffers for differentiable evaluations at theta (recalibrated once, no grad)."""
        with self._probing():
            return self._buffers_for(self.layout.views(theta.detach()), chunks)

    def _buffers_for(self, params, chunks) -> dict[str, torch.Tensor]:
        if self._bns and self.bn_policy == "recalibrate":
            return self._recalibrated(params, chunks)
        return {}

    def _recalibrated(self, params, chunks) -> dict[str, torch.Tensor]:
        """Fresh BN statistics at `params`: the average over `chunks` (cumulative mode)."""
        buffers = {n: b.clone() for n, b in self._buffers.items()}
        with torch.no_grad():
            functional_call(
                self._scope,
                {f"model.{k}": v for k, v in {**self._with_aliases(params), **buffers}.items()},
                (lambda: self._recalibrate_scratch(chunks),),
                tie_weights=False,
            )
        return buffers

    def _recalibrate_scratch(self, chunks) -> None:
        """Inside a reparametrised scope: reset the BN buffers in use and average fresh
        statistics over `chunks` (momentum None = cumulative mean over the chunks)."""
        for m in self._bns:
            if m.running_mean is not None:
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.num_batches_tracked.zero_()
        momenta = [m.momentum for m in self._bns]
        try:
            for m in self._bns:
                m.momentum = None
                m.training = True
            with torch.no_grad():
                for x, _ in chunks:
                    self.model(x)
        finally:
            for m, momentum in zip(self._bns, momenta):
                m.momentum = momentum
                m.training = False

    @contextlib.contextmanager
    def _probing(self):
        """Dropout and friends off; BN in train mode only under the "batch" policy.

        Under "batch", BN layers also stop tracking running statistics for the duration:
        they normalise with batch statistics and write nothing (which also keeps forward-
        and reverse-mode transforms free of in-place buffer updates).
        """
        flags = [m.training for m in self._modules]
        tracking = [m.track_running_stats for m in self._bns]
        batch = self.bn_policy == "batch"
        # object.__setattr__: plain attributes, and Module.__setattr__ costs ~3 us a call
        # (dozens per sweep on a small network)
        try:
            for m, flag in zip(self._modules, flags):
                want = batch and m in self._bn_set
                if flag != want:  # set only what changes
                    object.__setattr__(m, "training", want)
            if batch:
                for m in self._bns:
                    object.__setattr__(m, "track_running_stats", False)
            yield
        finally:
            for m, flag in zip(self._modules, flags):
                if m.training != flag:
                    object.__setattr__(m, "training", flag)
            for m, track in zip(self._bns, tracking):
                object.__setattr__(m, "track_running_stats", track)
