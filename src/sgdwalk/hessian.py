"""The Hessian of a mean loss over data, as a linear operator on flat parameter vectors.

    L(theta) = (1/N) sum_j l(f(x_j; theta), y_j),    H = grad^2 L(theta)   (P x P)

over the N examples of a data set given as (x, y) chunks, at a flat point theta (P,), with
`l` a per-example loss (`sgdwalk.losses`). In the style of curvlinops' HessianLinearOperator:
built from a model, a loss, a point and data; `H @ v` for a flat (P,) vector; the gradient
g = grad L(theta) comes with every product (`gradient_and_matvec`) or alone
(`gradient_and_loss`). L is a sum over chunks, so g and H v are sums of per-chunk terms: each
chunk builds and frees its own graph (the memory of one chunk, not the whole data set).

The probes take their Hessian-vector products here and nowhere else (the curvature along
the step, Lanczos sharpness); the product itself is the pure kernel
`functional.hvp.grad_and_hvp` (double backward). An eigenvalue solve, which takes many
products at one point, uses `kept()`: the gradient's graph over all chunks built once, then
one backward per product (`functional.hvp.GradientGraph`), freed when the solve ends; it
holds every chunk's graph at once (the memory of the whole data set's double-backward graph,
not one chunk's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from sgdwalk.functional.flat import ParamLayout
from sgdwalk.functional.hvp import GradientGraph, grad_and_hvp
from sgdwalk.losses import Loss, per_example

ModelFn = Callable[[Tensor, Tensor], Tensor]  # (theta (P,), x) -> output, differentiable


class Hessian:
    """H = grad^2 L(theta) of the mean of `loss_fn` over `data`, as a (P, P) operator.

    Args:
        model_fn: (theta_flat, x) -> the model's output on x at theta (see `of_module`).
        loss_fn: (output, target) -> per-example losses (N,).
        theta: (P,) point; it is not modified.
        data: (x, y) chunks, N examples in all.
    """

    def __init__(self, model_fn: ModelFn, loss_fn: Loss, theta: Tensor,
                 data: Sequence[tuple[Tensor, Tensor]]):
        self.model_fn, self.loss_fn = model_fn, loss_fn
        self.theta = theta.detach()
        self.data = list(data)
        self.n = sum(len(y) for _, y in self.data)
        self.shape = (theta.numel(), theta.numel())

    @classmethod
    def of_module(cls, model: torch.nn.Module, loss_fn: Loss, theta: Tensor,
                  data: Sequence[tuple[Tensor, Tensor]]) -> Hessian:
        """The Hessian of a module in its current mode, its trainable parameters (in
        `ParamLayout.of(model)` order) set to theta by `functional_call`: never written.
        (BatchNorm in train mode would update its running statistics: `LossEvaluator.hessian`
        applies the probing BN policies.)"""
        views = ParamLayout.of(model).views

        def model_fn(flat: Tensor, x: Tensor) -> Tensor:
            return functional_call(model, views(flat), (x,))

        return cls(model_fn, loss_fn, theta, data)

    def chunk_losses(self) -> list[Callable[[Tensor], Tensor]]:
        """L as a sum of terms, one per chunk c: theta -> (1/N) sum_{j in c} l_j(theta)."""
        return [self._chunk_loss(x, y) for x, y in self.data]

    def gradient_and_matvec(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """(g, H v), both (P,) detached in theta's dtype, for a (P,) vector v."""
        g, hv = torch.zeros_like(self.theta), torch.zeros_like(self.theta)
        for f in self.chunk_losses():
            gc, hc = grad_and_hvp(f, self.theta, v)
            g += gc
            hv += hc
        return g, hv

    def __matmul__(self, v: Tensor) -> Tensor:
        """H v for a flat (P,) vector v."""
        return self.gradient_and_matvec(v)[1]

    def kept(self) -> GradientGraph:
        """H as an operator for many products at theta: `with H.kept() as op: op @ v`.

        The forward and the first backward (create_graph) run once per chunk and their
        graphs are kept, so each product after that is one backward (PyHessian's recipe);
        the graphs of all chunks are held until the `with` block ends."""
        return GradientGraph(self.chunk_losses(), self.theta)

    def gradient_and_loss(self) -> tuple[Tensor, float]:
        """(g, L(theta)): first derivatives only, one backward per chunk."""
        g = torch.zeros_like(self.theta)
        value = 0.0
        x_ = self.theta.detach().requires_grad_(True)
        with torch.enable_grad():
            for f in self.chunk_losses():
                loss = f(x_)
                (gc,) = torch.autograd.grad(loss, x_)
                g += gc
                value += float(loss.detach())
        return g, value

    def _chunk_loss(self, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        """theta -> (the sum of the chunk's per-example losses) / N, differentiable."""

        def f(theta: Tensor) -> Tensor:
            return per_example(self.loss_fn, self.model_fn(theta, x), y).sum() / self.n

        return f
