"""Losses at moved parameters, evaluated without touching the model being trained.

The evaluator owns one scratch flat parameter vector. Moving to theta + a*u is one fused
`torch.add(..., out=scratch)`; the model is then run with `torch.func.functional_call` on
views of the scratch vector, so the trained parameters are never written.

BatchNorm policy while probing (see docs/metrics.md):
- "batch" (default): BN layers use the statistics of each fixed probe batch (train mode);
  their running statistics are redirected to scratch copies, so the model's are untouched.
  Every point sees the same batch compositions, so differences along the line are exact.
- "recalibrate": at each point, fresh running statistics are accumulated over the source's
  batches, then the source is evaluated in eval mode (about twice the cost).
- "eval": eval mode with the model's current running statistics. Cheap, but the statistics
  belong to theta_t, not to the moved point; not the default for that reason.
Other modules (dropout) are always in eval mode while probing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from sgdwalk.functional.flat import ParamLayout

Chunks = Sequence[tuple[torch.Tensor, torch.Tensor]]


def per_example_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each example, shape (N,)."""
    return F.cross_entropy(logits, y, reduction="none")


class LossEvaluator:
    """Per-example losses of `model` at arbitrary flat parameters, on fixed data chunks.

    Args:
        model: the trained module; only its `training` flags are toggled (and restored).
        layout: where each trainable parameter lives in a flat vector.
        loss_fn: (output, target) -> per-example losses (N,) or a scalar mean.
        bn_policy: "batch" | "recalibrate" | "eval".
        sources: named data, each a list of (x, y) chunks on the model's device.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layout: ParamLayout,
        loss_fn: Callable = per_example_cross_entropy,
        bn_policy: str = "batch",
        sources: dict[str, Chunks] | None = None,
    ):
        self.model = model
        self.layout = layout
        self.loss_fn = loss_fn
        self.bn_policy = bn_policy
        self.sources: dict[str, list] = {k: list(v) for k, v in (sources or {}).items()}
        first = next(p for p in model.parameters() if p.requires_grad)
        self.scratch = layout.empty(first.detach())
        self._scratch_views = layout.views(self.scratch)
        self._bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        # Scratch copies of every buffer: in "batch" mode BN writes its running statistics
        # here instead of into the model.
        self._buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    # -- points ----------------------------------------------------------------------
    def move(self, theta: torch.Tensor, u: torch.Tensor | None = None, a: float = 0.0):
        """Set the scratch parameters to theta + a*u and return them (flat)."""
        if u is None or a == 0.0:
            self.scratch.copy_(theta)
        else:
            torch.add(theta, u, alpha=a, out=self.scratch)
        return self.scratch

    # -- evaluation ------------------------------------------------------------------
    @torch.no_grad()
    def losses(self, chunks: Chunks, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example losses (N,) over all chunks at `flat` (default: the scratch point)."""
        params = self._scratch_views if flat is None else self.layout.views(flat)
        with self._probing():
            buffers = self._buffers_for(params, chunks)
            out = [self._loss(params, buffers, x, y) for x, y in chunks]
        return torch.cat(out)

    @torch.no_grad()
    def line(self, theta, u, grid: Sequence[float], chunks: Chunks) -> torch.Tensor:
        """Per-example losses on the line theta + a*u at each grid point: shape (K, N)."""
        return torch.stack([self.losses(chunks, self.move(theta, u, float(a))) for a in grid])

    def loss_function(self, chunks: Chunks) -> Callable[[torch.Tensor], torch.Tensor]:
        """theta_flat -> mean loss over `chunks`, differentiable (for HVPs and Lanczos)."""
        n = sum(len(y) for _, y in chunks)

        def f(theta_flat: torch.Tensor) -> torch.Tensor:
            params = self.layout.views(theta_flat)
            with self._probing():
                buffers = self._buffers_for(params, chunks)
                total = sum(self._loss(params, buffers, x, y).sum() for x, y in chunks)
            return total / n

        return f

    # -- internals -------------------------------------------------------------------
    def _loss(self, params, buffers, x, y) -> torch.Tensor:
        out = functional_call(self.model, (params, buffers), (x,), strict=False)
        loss = self.loss_fn(out, y)
        return loss.expand(len(y)) if loss.dim() == 0 else loss

    def _buffers_for(self, params, chunks) -> dict[str, torch.Tensor]:
        if not self._bns or self.bn_policy == "eval":
            return {}
        if self.bn_policy == "batch":
            return self._buffers
        return self._recalibrated(params, chunks)

    def _recalibrated(self, params, chunks) -> dict[str, torch.Tensor]:
        """Fresh BN statistics at `params`: the average over `chunks` (cumulative mode)."""
        buffers = {n: b.clone() for n, b in self._buffers.items()}
        for name, b in buffers.items():
            if name.endswith("running_mean") or name.endswith("num_batches_tracked"):
                b.zero_()
            elif name.endswith("running_var"):
                b.fill_(1.0)
        momenta = [m.momentum for m in self._bns]
        try:
            for m in self._bns:
                m.momentum = None  # cumulative average over the chunks
                m.train()
            with torch.no_grad():
                for x, _ in chunks:
                    functional_call(self.model, (params, buffers), (x,), strict=False)
        finally:
            for m, momentum in zip(self._bns, momenta):
                m.momentum = momentum
                m.eval()
        return buffers

    @contextlib.contextmanager
    def _probing(self):
        """Dropout and friends off; BN in train mode only under the "batch" policy."""
        flags = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.eval()
            if self.bn_policy == "batch":
                for m in self._bns:
                    m.train()
            yield
        finally:
            for m, flag in flags:
                m.training = flag
