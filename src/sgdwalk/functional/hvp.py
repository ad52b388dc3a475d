"""Hessian-vector products and the curvature of the loss along a direction.

`loss_fn(theta) -> scalar` is any differentiable function of a flat (P,) parameter vector
(e.g. a model evaluated through `torch.func.functional_call` on a fixed batch). Two
implementations of H v are offered:

    "reverse"  double backward: grad of <grad L(theta), v> via `torch.autograd.grad`
               with create_graph=True (works with any autograd code);
    "forward"  forward-over-reverse: `torch.func.jvp(torch.func.grad(loss_fn), theta, v)`
               (needs `loss_fn` to be torch.func-compatible: no in-place updates of
               captured state, no `.item()`).

Both return the gradient as a by-product, so a probe gets <g, u> for free. "reverse" is
the default because it was faster on CPU: for a 784-500-350-10 BatchNorm MLP at batch 128
(torch 2.13, 2 threads) one H v cost 2.9x a forward+backward pass, against 4.1x for
"forward"; both agree to float32 round-off.

Many products at one point (an eigenvalue solve) take `GradientGraph`: the forward and the
first backward (create_graph) run once, and each product is then one backward through the
kept graph of g (PyHessian's recipe), until the graph is closed.

A product at the point of a training step, taken after the step, takes `StepGraph`: the
step's own backward keeps its graph, and the product is one more backward through it, with
autograd's saved copies of the parameters read from a copy of theta_t (the optimizer has
moved the parameters in place by then).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["GradientGraph", "StepGraph", "grad_and_hvp", "hvp", "directional_curvature",
           "predicted_floor"]

Method = Literal["reverse", "forward"]
LossFn = Callable[[Tensor], Tensor]


def _check(theta: Tensor, v: Tensor, where: str) -> None:
    if theta.dim() != 1 or v.shape != theta.shape:
        raise ValueError(
            f"{where}: expected theta and v of the same shape (P,), "
            f"got {tuple(theta.shape)} and {tuple(v.shape)}"
        )


def grad_and_hvp(
    loss_fn: LossFn, theta: Tensor, v: Tensor, method: Method = "reverse"
) -> tuple[Tensor, Tensor]:
    """Gradient g = grad L(theta) and Hessian-vector product H v = grad^2 L(theta) v.

    Args:
        loss_fn: maps a (P,) parameter vector to a scalar loss.
        theta: (P,) point; it is not modified and need not require grad.
        v: (P,) direction, same dtype and device as theta.
        method: "reverse" (double backward) or "forward" (forward-over-reverse).

    Returns: (g, Hv), both (P,) and detached.
    """
    _check(theta, v, "grad_and_hvp")
    v = v.detach()
    if method == "reverse":
        with torch.enable_grad():
            x = theta.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(loss_fn(x), x, create_graph=True)
            (hv,) = torch.autograd.grad(g, x, grad_outputs=v)
        return g.detach(), hv.detach()
    if method == "forward":
        g, hv = torch.func.jvp(torch.func.grad(loss_fn), (theta.detach(),), (v,))
        return g.detach(), hv.detach()
    raise ValueError(f"grad_and_hvp: expected method 'reverse' or 'forward', got {method!r}")


class GradientGraph:
    """g = grad L(theta) with its graph kept, L = sum of `loss_fns`, for many H v at theta.

    Built once: one forward and one backward with create_graph per term (each term's graph
    is kept). Then `self @ v` is one backward of <g, v> through the kept graphs, with no
    forward and no first backward: the least a reverse-mode product costs. Memory: every
    term's forward activations plus what the first backward saved for the second (a few
    times one forward's activations over all the terms' data, against one term's for
    `grad_and_hvp`), held until `close()` or the end of a `with` block.

    Args:
        loss_fns: functions of a (P,) vector to scalars whose sum is L (e.g. one per chunk).
        theta: (P,) point; it is not modified.
    """

    def __init__(self, loss_fns: Sequence[LossFn], theta: Tensor):
        if theta.dim() != 1:
            raise ValueError(f"GradientGraph: expected theta of shape (P,), "
                             f"got {tuple(theta.shape)}")
        self._x = theta.detach().requires_grad_(True)
        g = torch.zeros_like(self._x)
        with torch.enable_grad():
            for f in loss_fns:
                (gc,) = torch.autograd.grad(f(self._x), self._x, create_graph=True)
                g = g + gc
        self._g: Tensor | None = g
        self.gradient = g.detach()  # (P,) g = grad L(theta)
        self.n_matvec = 0

    def __matmul__(self, v: Tensor) -> Tensor:
        """H v for a (P,) vector v, detached, in theta's dtype."""
        if self._g is None:
            raise RuntimeError("GradientGraph: the graph was closed")
        _check(self._x, v, "GradientGraph")
        self.n_matvec += 1
        if not self._g.requires_grad:  # g does not depend on theta: L is linear, H = 0
            return torch.zeros_like(self.gradient)
        (hv,) = torch.autograd.grad(self._g, self._x, grad_outputs=v.detach().to(self._g.dtype),
                                    retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.gradient) if hv is None else hv.detach()

    def close(self) -> None:
        """Free the kept graph (its memory); later products raise."""
        self._g = None

    def __enter__(self) -> GradientGraph:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StepGraph:
    """The gradient of a training step with its graph kept, for H v at theta_t *after* the
    optimizer has moved the parameters to theta_{t+1} in place.

        graph = StepGraph(params)               # once; reused step after step
        with graph.recording():                 # the step's forward and backward
            grads = graph.gradient(loss)        # g_t, detached: set as p.grad
        graph.freeze()                          # theta_t kept; then optimizer.step()
        hv = graph @ v                          # H v at theta_t: one backward
        graph.close()                           # the step's graph freed

    The double backward reads tensors autograd saved in the forward and in the first
    backward; those that alias a parameter (a weight, its transpose) would be theta_{t+1}
    after the step. Inside `recording()` every saved tensor that shares a parameter's
    storage is kept as a reference to that storage (`torch.autograd.graph.saved_tensors_
    hooks`); `freeze()` copies those storages (theta_t: P numbers, into buffers kept from
    step to step), and from then on such a tensor is unpacked from the copy, with its own
    size, strides and offset. Under these hooks autograd does not check the version of a
    saved tensor, so they do: a saved tensor changed in place after it was saved (other
    than the parameters by the step, after `freeze`) raises, as autograd would.

    Memory: the step's graph (what a create_graph backward saves: a few times the
    forward's activations) until `close()`, and one copy of the parameters while the object
    lives. `gradient` returns what `loss.backward()` would leave in `.grad` for one loss
    (the same kernels: a create_graph backward computes the same first derivatives;
    tests/train/test_step_graph.py checks whole runs bit for bit on an MLP and a ResNet
    with BN).

    Args:
        params: the trained parameters (leaves), in the order of the flat vectors of `@`.
    """

    def __init__(self, params: Sequence[Tensor]):
        self.params = list(params)
        self._storages: dict[int, Tensor] = {}  # storage address -> its parameter
        self._copies: dict[int, Tensor] = {}  # storage address -> a tensor on its copy
        self._frozen: dict[int, int] | None = None  # storage address -> version at freeze
        self._grads: tuple[Tensor | None, ...] | None = None

    def recording(self):
        """The context of the step's forward and backward: saved parameters tracked."""
        self.close()
        self._storages = {p.untyped_storage().data_ptr(): p for p in self.params if p.numel()}
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: Tensor) -> tuple:
        ptr = t.untyped_storage().data_ptr()
        return t, t._version, ptr if ptr in self._storages else None

    def _unpack(self, packed: tuple) -> Tensor:
        t, version, ptr = packed
        if ptr is None or self._frozen is None:  # not a parameter, or before the step
            if t._version != version:
                raise RuntimeError(f"StepGraph: a tensor saved for the backward {tuple(t.shape)}"
                                   f" was modified in place (version {version} -> "
                                   f"{t._version})")
            return t
        if self._frozen[ptr] != version:
            raise RuntimeError(f"StepGraph: a parameter saved for the backward "
                               f"{tuple(t.shape)} was modified in place before freeze()")
        base = self._copies[ptr]
        if t.dtype != base.dtype:  # an alias of another dtype: its bytes, as saved
            return t.new_empty(0).set_(base.untyped_storage(), t.storage_offset(), t.size(),
                                       t.stride())
        return base.as_strided(t.size(), t.stride(), t.storage_offset())

    def gradient(self, loss: Tensor) -> list[Tensor | None]:
        """d loss / d params with create_graph (the graph kept for `@`), as detached tensors
        laid out like their parameters (None for a parameter the loss does not use)."""
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        self._grads = grads
        with torch.no_grad():
            return [None if g is None else torch.empty_like(p).copy_(g)
                    for p, g in zip(self.params, grads)]

    def freeze(self) -> None:
        """Copy the parameters' storages (theta_t): call before the step moves them."""
        for ptr, p in self._storages.items():
            storage = p.untyped_storage()
            copy = self._copies.get(ptr)
            if copy is None or copy.untyped_storage().nbytes() != storage.nbytes():
                copy = self._copies[ptr] = p.new_empty(0).set_(storage.clone())
            else:
                copy.untyped_storage().copy_(storage)
        self._frozen = {ptr: p._version for ptr, p in self._storages.items()}

    def __matmul__(self, v: Tensor) -> Tensor:
        """H v at theta_t for a flat (P,) vector v (parameters in order): one backward of
        <g, v>; detached, in the parameters' dtype."""
        if self._grads is None:
            raise RuntimeError("StepGraph: expected a recorded gradient, got none (or closed)")
        sizes = [p.numel() for p in self.params]
        if v.dim() != 1 or v.numel() != sum(sizes):
            raise ValueError(f"StepGraph: expected v of shape ({sum(sizes)},), "
                             f"got {tuple(v.shape)}")
        outputs, directions = [], []
        for p, g, piece in zip(self.params, self._grads, v.detach().split(sizes)):
            if g is not None and g.requires_grad:  # else g does not depend on theta
                outputs.append(g)
                directions.append(piece.view(p.shape).to(g.dtype))
        hv = torch.autograd.grad(outputs, self.params, directions, retain_graph=True,
                                 allow_unused=True) if outputs else [None] * len(self.params)
        return torch.cat([p.new_zeros(p.numel()) if h is None else h.detach().reshape(-1)
                          for p, h in zip(self.params, hv)])

    def close(self) -> None:
        """Free the step's graph (the copy's buffers stay for the next step); later
        products raise until the next recording."""
        self._grads = None
        self._frozen = None


def hvp(loss_fn: LossFn, theta: Tensor, v: Tensor, method: Method = "reverse") -> Tensor:
    """Hessian-vector product H v, H = grad^2 L(theta); see `grad_and_hvp`.

    Returns: (P,) detached tensor.
    """
    return grad_and_hvp(loss_fn, theta, v, method)[1]


def directional_curvature(
    loss_fn: LossFn, theta: Tensor, u: Tensor, method: Method = "reverse"
) -> tuple[float, float]:
    """Curvature of L along u: kappa = u^T H u / ||u||^2, from one Hessian-vector product.

    Args:
        loss_fn, theta, method: as in `grad_and_hvp`.
        u: (P,) direction, e.g. the update theta_{t+1} - theta_t.

    Returns: (kappa, uHu) as floats; kappa is NaN if u = 0.
    """
    _, hu = grad_and_hvp(loss_fn, theta, u, method)
    uhu = float(u.detach().double() @ hu.double())
    uu = float(u.detach().double() @ u.detach().double())
    return (uhu / uu if uu > 0 else math.nan), uhu


def predicted_floor(grad_dot_u: float, uHu: float) -> float:
    """Floor of the local quadratic model along u: a* = -<g, u> / (u^T H u).

    Exact for a quadratic loss; for GD (u = -lr g) this is 1 / (lr kappa). Returns NaN when
    u^T H u <= 0: the model then has no minimum along the line (or any input is non-finite).
    """
    gu, uhu = float(grad_dot_u), float(uHu)
    if not (math.isfinite(gu) and math.isfinite(uhu)) or uhu <= 0:
        return math.nan
    return -gu / uhu
