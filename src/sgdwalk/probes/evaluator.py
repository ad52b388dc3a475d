"""Losses at moved parameters, evaluated without touching the model being trained.

The evaluator owns one scratch flat parameter vector. Moving to theta + a*u is one fused
`torch.add` (or `torch.lerp`, exact at both ends) into the scratch vector; the model is then
run with `torch.func.functional_call` on views of it, so the trained parameters are never
written. A sweep over many points (a line curve, a segment) reparametrises the model once
and only rewrites the scratch vector between points, so each point costs the forwards and
nothing else.

Data is named or given: a source name ("probe", "heldout": the chunks the Walk was given,
put once in the sweeps' memory format and kept) or a list of chunks (the step's batch).
What a chunk is and how the model is called on it is the `batch.BatchFormat` (an (x, y)
pair called as model(x) by default; dict batches and models that compute their own loss:
`sgdwalk.probes.batch`). Around the forwards: BatchNorm and dropout follow `bn_policy.BNPolicy`
(docs/bn_policy.md), 4-d inputs of sweeps `memory_format.SweepFormat`. Derivatives:
`hessian` (an `sgdwalk.hessian.Hessian`, with the gradient), `directional_derivative`
(forward mode) and `loss_function` (one graph).

Attention: PyTorch's fused `scaled_dot_product_attention` kernels have no double backward
and no forward-mode derivative. Every forward that will be differentiated twice (Hessian-
vector products) or in forward mode (`jvp`) runs inside `second_order()`, which restricts
`scaled_dot_product_attention` to its math backend (ordinary differentiable ops, the same
function); no-grad sweeps and first-order gradients keep the fused kernels.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Sequence

import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from sgdwalk.errors import ConfigError
from sgdwalk.functional.flat import ParamLayout
from sgdwalk.hessian import Hessian, ModelFn
from sgdwalk.losses import cross_entropy
from sgdwalk.probes.batch import BatchFormat, Pairs
from sgdwalk.probes.bn_policy import BNPolicy
from sgdwalk.probes.memory_format import SweepFormat

Chunks = list[tuple]  # (inputs, targets) pairs of the BatchFormat
Data = str | Sequence[tuple]  # a source name, or chunks
AUTOCAST = ("off", "bf16")  # walk.probe_autocast: the no-grad sweeps' forwards
_BATCHED_LOSS_MAX = 2**22  # most outputs a sweep buffers to apply the loss once (16 MiB f32)


def second_order():
    """Context for forwards that are differentiated twice or in forward mode: attention by
    `scaled_dot_product_attention` takes its math backend (whose ops all have double
    backward and jvp) instead of a fused kernel (which has neither). A model without
    attention computes exactly what it computes outside."""
    return sdpa_kernel([SDPBackend.MATH])


class _Scope(torch.nn.Module):
    """Holds the model so that one `functional_call` covers a whole sweep of forwards."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, body: Callable[[], object]):
        return body()


class _Sweep:
    """The forwards of one sweep and their per-example losses: `count` points (`place(i)`
    sets the scratch vector to point i) on `chunks`, run inside one reparametrisation.

    For a row-wise loss (of (x, y) chunks) the outputs of all points are kept and the loss
    is applied once to all of them, when they fit in _BATCHED_LOSS_MAX numbers (decided at
    the first output); otherwise each chunk's losses are written into the (count, N) result
    as they come.
    """

    def __init__(self, ev: LossEvaluator, place: Callable[[int], object], count: int,
                 chunks: Chunks):
        self.ev, self.place, self.count, self.chunks = ev, place, count, chunks
        self.n = sum(len(y) for _, y in chunks)
        self.batched = ev.batches.row_wise
        self.kept: list[torch.Tensor] = []
        self.out = None if self.batched else ev._losses_out(count, self.n)

    def __call__(self) -> None:
        for i in range(self.count):
            self.place(i)
            if self.ev.bn.recalibrates:
                self.ev.bn.recalibrate(self.ev.inputs(self.chunks))
            j = 0
            for x, y in self.chunks:
                with self.ev.autocast():
                    z = self.ev.batches.forward(self.ev.model, x)
                self._keep(i, j, z.to(self.ev.scratch.dtype), y)  # losses in the model's dtype
                j += len(y)

    def _keep(self, i: int, j: int, z: torch.Tensor, y: torch.Tensor) -> None:
        if self.batched and not self.kept:
            self.batched = self.count * self.n * z[0].numel() <= _BATCHED_LOSS_MAX
            if not self.batched:
                self.out = self.ev._losses_out(self.count, self.n)
        if self.batched:
            self.kept.append(z)
        else:
            self.out[i, j : j + len(y)] = self.ev.batches.losses(z, y)

    def losses(self) -> torch.Tensor:
        """(count, N) losses in the scratch vector's dtype."""
        if not self.kept:
            return self.out if self.out is not None else self.ev._losses_out(self.count, self.n)
        # rows in (point, chunk) order, as y_all repeated
        z = torch.cat(self.kept) if len(self.kept) > 1 else self.kept[0]
        chunks = self.chunks
        y_all = chunks[0][1] if len(chunks) == 1 else torch.cat([y for _, y in chunks])
        if self.count > 1:  # along rows only: targets may be (N,), (N, D) or (N, T)
            y_all = y_all.repeat(self.count, *(1,) * (y_all.ndim - 1))
        losses = self.ev.batches.losses(z, y_all).view(self.count, self.n)
        if losses.dtype == self.ev.scratch.dtype:
            return losses
        return self.ev._losses_out(self.count, self.n).copy_(losses)


class LossEvaluator:
    """Per-example losses of `model` at arbitrary flat parameters, on fixed data chunks.

    Args:
        model: the trained module; only its `training` flags are toggled (and restored).
        layout: where each trainable parameter lives in a flat vector.
        batches: how chunks are made and the model called on them, and the per-example
            loss (`sgdwalk.probes.batch`); default (x, y) pairs with
            `sgdwalk.losses.cross_entropy`.
        bn_policy: "batch" | "recalibrate" | "eval".
        sources: named data, each a list of chunks on the model's device.
        memory_format: of 4-d inputs in no-grad sweeps: "channels_last", "contiguous" (as
            given), or "auto": channels_last for a CPU model with Conv2d layers; inputs that
            are not tensors (dict batches) are kept as given.
        autocast: "off", or "bf16": the forwards of no-grad sweeps (line, economy's f(1),
            barriers) under `torch.autocast` to bfloat16, their outputs cast back to the
            model's dtype before the loss; derivatives always in the model's dtype. Its
            error against float32 is measured in docs/metrics.md.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layout: ParamLayout,
        batches: BatchFormat | None = None,
        bn_policy: str = "batch",
        sources: dict[str, Chunks] | None = None,
        memory_format: str = "auto",
        autocast: str = "off",
    ):
        if autocast not in AUTOCAST:
            raise ConfigError(f"walk.probe_autocast: expected one of {', '.join(AUTOCAST)}, "
                              f"got {autocast!r}")
        self.model = model
        self.layout = layout
        self.batches = batches if batches is not None else Pairs(cross_entropy)
        self.bn = BNPolicy(model, bn_policy)
        self.sources: dict[str, Chunks] = {k: list(v) for k, v in (sources or {}).items()}
        first = next(p for p in model.parameters() if p.requires_grad)
        self.scratch = layout.empty(first.detach())
        self.format = SweepFormat(memory_format if self.batches.tensor_inputs else "contiguous",
                                  model, self.scratch.device)
        self.autocast_dtype = {"off": None, "bf16": torch.bfloat16}[autocast]
        self._swept: dict[str, Chunks] = {}  # source name -> its chunks in the sweep format
        # Tied parameters appear once in the layout; give every alias the same view, so the
        # model can be reparametrised without functional_call's per-call tie detection.
        canonical = {id(p): n for n, p in model.named_parameters()}
        self._aliases = [
            (n, canonical[id(p)])
            for n, p in model.named_parameters(remove_duplicate=False)
            if canonical[id(p)] != n and canonical[id(p)] in layout.names
        ]
        state = self._with_aliases(layout.views(self.scratch))
        if self.bn.recalibrates:
            state.update(self.bn.buffers)
        self._scope = _Scope(model)
        self._scope_state = {f"model.{k}": v for k, v in state.items()}

    def autocast(self):
        """The context of a no-grad sweep's forwards: bfloat16 autocast, or nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.scratch.device.type, dtype=self.autocast_dtype)

    @property
    def points_are_pure(self) -> bool:
        """Whether losses at a point depend on the parameters and the data only (BNPolicy)."""
        return self.bn.points_are_pure

    @property
    def reproduces_training_forward(self) -> bool:
        """Whether a probing forward computes what the training forward did (BNPolicy; never
        under bf16 autocast)."""
        return self.autocast_dtype is None and self.bn.reproduces_training_forward

    @property
    def channels_last(self) -> bool:
        """Whether sweeps feed 4-d inputs as channels_last (False until decided)."""
        return bool(self.format.channels_last)

    # -- points ----------------------------------------------------------------------
    def move(self, theta: torch.Tensor, u: torch.Tensor | None = None, a: float = 0.0):
        """Set the scratch parameters to theta + a*u and return them (flat)."""
        if u is None or a == 0.0:
            self.scratch.copy_(theta)
        else:
            torch.add(theta, u, alpha=a, out=self.scratch)
        return self.scratch

    def same_point(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """Whether two flat points are equal, entry for entry (on a sharded model: on every
        rank, so that all ranks take the same branch)."""
        return a.equal(b)

    # -- no-grad evaluation ----------------------------------------------------------
    @torch.no_grad()
    def sweep(self, place: Callable[[int], object], count: int, data: Data) -> torch.Tensor:
        """Per-example losses at `count` points: row i after `place(i)` set the scratch.

        The model is reparametrised once for all points; between points only the scratch
        vector changes (in place), so a point costs its forwards.

        Returns: (count, N) losses in the model's dtype, N the examples in all chunks.
        """
        run = _Sweep(self, place, count, self._for_sweep(data))
        with self.bn.probing():
            functional_call(self._scope, self._scope_state, (run,), tie_weights=False)
        return run.losses()

    def _losses_out(self, count: int, n: int) -> torch.Tensor:
        return torch.empty(count, n, dtype=self.scratch.dtype, device=self.scratch.device)

    def losses(self, data: Data, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example losses (N,) over all chunks at `flat` (default: the scratch point)."""
        if flat is not None and flat is not self.scratch:
            self.scratch.copy_(flat)
        return self.sweep(lambda i: None, 1, data)[0]

    def line(
        self,
        theta: torch.Tensor,
        u: torch.Tensor,
        grid: Sequence[float],
        data: Data,
        end: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-example losses on the line theta + a*u at each grid point: shape (K, N).

        With `end` = theta + u given (theta_{t+1}), points are `torch.lerp(theta, end, a)`,
        exactly theta at a = 0 and exactly `end` at a = 1.
        """
        points = [float(a) for a in grid]
        if end is None:
            return self.sweep(lambda i: self.move(theta, u, points[i]), len(points), data)
        return self.sweep(
            lambda i: torch.lerp(theta, end, points[i], out=self.scratch), len(points), data
        )

    def segment(
        self, start: torch.Tensor, stop: torch.Tensor, positions: Sequence[float], data: Data
    ) -> torch.Tensor:
        """Per-example losses at (1 - b) start + b stop for each b: shape (len(positions), N)."""
        return self.line(start, None, positions, data, end=stop)

    # -- differentiable evaluation ---------------------------------------------------
    def model_fn(self, theta: torch.Tensor, data: Data, twice: bool = True) -> ModelFn:
        """The model as a function (flat, inputs) -> output (`batches.forward`), in probing
        mode. Under "recalibrate" its BN statistics are those of theta on `data`, computed
        without gradient and held fixed (so derivatives treat them as constants). `twice`:
        its forwards run under `second_order()` (attention on the math path), as second and
        forward-mode derivatives need; False keeps fused attention, for first derivatives
        only."""
        buffers = self._fixed_buffers(theta, self._chunks(data))
        order = second_order if twice else contextlib.nullcontext

        def forward(flat: torch.Tensor, x) -> torch.Tensor:
            state = {**self._with_aliases(self.layout.views(flat)), **buffers}
            with self.bn.probing(), order():
                return functional_call(
                    self._scope, {f"model.{k}": v for k, v in state.items()},
                    (functools.partial(self.batches.forward, self.model, x),), tie_weights=False)

        return forward

    def hessian(self, data: Data, theta: torch.Tensor) -> Hessian:
        """The Hessian of the mean loss over `data` at theta (with its gradient), under the
        BN policy: `H @ v`, `H.gradient_and_matvec(v)`, `H.gradient_and_loss()`."""
        return Hessian(self.model_fn(theta, data), self.batches.losses, theta,
                       self._chunks(data))

    def gradients(self, groups: Sequence[Data], theta: torch.Tensor) -> torch.Tensor:
        """Gradients of the mean loss of each group of chunks at theta: (len(groups), P)."""
        out = torch.empty(len(groups), theta.numel(), dtype=theta.dtype, device=theta.device)
        for i, group in enumerate(groups):
            chunks = self._chunks(group)
            first = Hessian(self.model_fn(theta, chunks, twice=False), self.batches.losses,
                            theta, chunks)
            out[i] = first.gradient_and_loss()[0]
        return out

    def directional_derivative(
        self, data: Data, theta: torch.Tensor, v: torch.Tensor
    ) -> tuple[float, float]:
        """(L(theta), <grad L(theta), v>) of the mean loss over `data`, by forward-mode AD.

        One `torch.func.jvp` per chunk: about the cost of two forwards, no backward.
        """
        value, slope = 0.0, 0.0
        for f in self.hessian(data, theta).chunk_losses():
            with warnings.catch_warnings():  # torch 2.13's jvp scripts a helper internally
                warnings.filterwarnings("ignore", ".*torch.jit.script", DeprecationWarning)
                f0, df = torch.func.jvp(f, (theta.detach(),), (v.detach(),))
            value += float(f0)
            slope += float(df)
        return value, slope

    def loss_function(self, data: Data) -> Callable[[torch.Tensor], torch.Tensor]:
        """theta_flat -> mean loss over `data`, differentiable, as one graph over all chunks
        (`hessian` accumulates chunk by chunk instead). Under "recalibrate" the statistics
        are those of the point it is called at, without gradient."""
        chunks = self._chunks(data)
        n = sum(len(y) for _, y in chunks)

        def f(theta_flat: torch.Tensor) -> torch.Tensor:
            forward = self.model_fn(theta_flat, chunks)
            total = sum(self.batches.losses(forward(theta_flat, x), y).sum()
                        for x, y in chunks)
            return total / n

        return f

    # -- internals -------------------------------------------------------------------
    def _chunks(self, data: Data) -> Chunks:
        """The chunks of `data`: a source's, or the given ones."""
        if not isinstance(data, str):
            return list(data)
        if data not in self.sources:
            raise ConfigError(f"evaluator: expected a source among {sorted(self.sources)}, "
                              f"got {data!r}")
        return self.sources[data]

    def _for_sweep(self, data: Data) -> Chunks:
        """The chunks of `data` in the sweeps' memory format: a source's converted once and
        kept, given chunks converted for this sweep."""
        if not isinstance(data, str):
            return self.format.convert(list(data), self._takes_channels_last)
        if data not in self._swept:
            self._swept[data] = self.format.convert(self._chunks(data), self._takes_channels_last)
        return self._swept[data]

    def inputs(self, chunks: Chunks) -> list[Callable[[], object]]:
        """The forwards of `chunks` as calls without arguments (what BN recalibration runs)."""
        return [functools.partial(self.batches.forward, self.model, x) for x, _ in chunks]

    def _takes_channels_last(self, x: torch.Tensor) -> bool:
        """Whether the model runs on the channels_last input x (a trial forward)."""
        try:
            with torch.no_grad(), self.bn.probing():
                self.model(x)
        except RuntimeError:  # e.g. `.view` of a channels_last feature map
            return False
        return True

    def _with_aliases(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self._aliases:
            return params
        return {**params, **{alias: params[name] for alias, name in self._aliases}}

    def _fixed_buffers(self, theta: torch.Tensor, chunks: Chunks) -> dict[str, torch.Tensor]:
        """BN buffers for derivatives at theta: none but under "recalibrate", where they are
        fresh statistics at theta averaged over `chunks` (no gradient)."""
        if not self.bn.recalibrates:
            return {}
        buffers = {n: b.clone() for n, b in self.bn.buffers.items()}
        state = {**self._with_aliases(self.layout.views(theta.detach())), **buffers}
        with torch.no_grad(), self.bn.probing():
            functional_call(self._scope, {f"model.{k}": v for k, v in state.items()},
                            (functools.partial(self.bn.recalibrate, self.inputs(chunks)),),
                            tie_weights=False)
        return buffers
