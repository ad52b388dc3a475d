"""Oracle problems and small drivers for the probe tests.

`LeastSquares`: a linear model w -> X w with the loss 0.5 (x_j^T w - y_j)^2 per example, in
float64. Its mean loss is an exact quadratic with Hessian H = X^T X / n, so along any step
f(a) = L0 + a <g, u> + a^2 u^T H u / 2 exactly: floor, height, alpha, curvature along the
step and the Hessian's eigenvalues are all known in closed form.

`hand_mlp_loss`: a tanh MLP (optionally with train-mode BatchNorm per chunk) written by hand
as a function of one flat float64 vector, in the layout of `tiny_mlp(...)`, so autograd's full
Hessian is an independent oracle for the evaluator's Hessian-vector products.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sgdwalk.probes.walk import Walk


def half_squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example 0.5 (out - y)^2 for a (N, 1) output."""
    return 0.5 * (out.squeeze(-1) - y) ** 2


@dataclass
class LeastSquares:
    X: torch.Tensor  # (n, P)
    y: torch.Tensor  # (n,)

    @property
    def H(self) -> torch.Tensor:
        return self.X.T @ self.X / len(self.y)

    def model(self, w: torch.Tensor) -> nn.Module:
        m = nn.Linear(self.X.shape[1], 1, bias=False).double()
        with torch.no_grad():
            m.weight.copy_(w.reshape(1, -1))
        return m

    def loss(self, w: torch.Tensor) -> float:
        r = self.X @ w - self.y
        return float(0.5 * (r @ r) / len(self.y))

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        return self.X.T @ (self.X @ w - self.y) / len(self.y)

    def per_example(self, w: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.X @ w - self.y) ** 2


def make_least_squares(n: int = 40, P: int = 6, seed: int = 0, spread: float = 3.0):
    """y = X w_true + noise, with column scales 1..spread, so H has distinct eigenvalues."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, P, generator=gen, dtype=torch.float64)
    X = X * torch.linspace(1.0, spread, P, dtype=torch.float64)
    w_true = torch.randn(P, generator=gen, dtype=torch.float64)
    y = X @ w_true + torch.randn(n, generator=gen, dtype=torch.float64)
    return LeastSquares(X, y)


def gd_step(problem: LeastSquares, walk: Walk, model: nn.Module, lr: float, steps: int = 1):
    """Full-batch GD on the least-squares problem with `walk` around each step."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = half_squared_error(model(problem.X), problem.y).mean()
        loss.backward()
        walk.before_step(loss.detach(), (problem.X, problem.y), full_batch=True)
        opt.step()
        walk.after_step(opt)
    return walk


# -- a tiny network and its hand-written loss -----------------------------------------------


def tiny_mlp(d_in=3, hidden=4, classes=3, batchnorm=False, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(d_in, hidden)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.Tanh(), nn.Linear(hidden, classes)]
    return nn.Sequential(*layers).double()


def hand_mlp_loss(model: nn.Module, chunks):
    """theta_flat -> mean cross-entropy over chunks, BN (if any) with each chunk's statistics."""
    shapes = [p.shape for p in model.parameters()]
    has_bn = any(isinstance(m, nn.BatchNorm1d) for m in model)
    eps = 1e-5
    n = sum(len(y) for _, y in chunks)

    def f(theta: torch.Tensor) -> torch.Tensor:
        parts, i = [], 0
        for s in shapes:
            k = s.numel()
            parts.append(theta[i : i + k].reshape(s))
            i += k
        if has_bn:
            w1, b1, gamma, beta, w2, b2 = parts
        else:
            w1, b1, w2, b2 = parts
        total = theta.new_zeros(())
        for x, y in chunks:
            h = x @ w1.T + b1
            if has_bn:
                mu = h.mean(0)
                var = h.var(0, unbiased=False)
                h = (h - mu) / torch.sqrt(var + eps) * gamma + beta
            logits = torch.tanh(h) @ w2.T + b2
            total = total + F.cross_entropy(logits, y, reduction="sum")
        return total / n

    return f


def classification_data(n=24, d_in=3, classes=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# -- a small BN classifier trained by hand with a Walk ---------------------------------------


class DropoutNet(nn.Module):
    """Linear -> BN -> ReLU -> Dropout -> Linear: every kind of train/eval difference."""

    def __init__(self, d_in=64, hidden=24, classes=10, p=0.3):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.drop = nn.Dropout(p)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x.flatten(1))))))


def digits_tensors(n=320):
    from sgdwalk.config import DataConfig
    from sgdwalk.data import load_dataset

    data = load_dataset(DataConfig(name="digits", probe_size=64))
    return data.train.x[:n], data.train.y[:n], data.probe.x, data.probe.y


def manual_run(make_model, walk_kwargs: dict | None, steps=12, batch=32, lr=0.1, seed=0,
               optimizer=None):
    """Train `make_model()` on digits by hand for `steps` SGD steps, with a Walk if
    `walk_kwargs` is not None. Returns (model, losses, walk)."""
    x, y, px, py = digits_tensors()
    torch.manual_seed(seed)
    model = make_model()
    opt = (optimizer or (lambda ps: torch.optim.SGD(ps, lr=lr)))(model.parameters())
    walk = None
    if walk_kwargs is not None:
        walk = Walk(model, probe_set=(px, py), heldout=(px[:40], py[:40]), probe_batch=32,
                    **walk_kwargs)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randperm(len(y), generator=gen)[:batch]
        xb, yb = x[idx], y[idx]
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        if walk is not None:
            walk.before_step(loss.detach(), (xb, yb))
        opt.step()
        if walk is not None:
            walk.after_step(opt)
        losses.append(loss.detach().clone())
    return model, torch.stack(losses), walk


GPT_VOCAB, GPT_T = 5, 4


def tiny_gpt(dropout=0.0, seed=0) -> nn.Module:
    """1 layer, 2 heads, width 4, block 4, vocab 5: 288 float64 parameters."""
    from sgdwalk.config import ModelConfig
    from sgdwalk.models import build_model

    cfg = ModelConfig(name="gpt", n_layer=1, n_head=2, n_embd=4, block_size=GPT_T,
                      dropout=dropout)
    torch.manual_seed(seed)
    return build_model(cfg, (GPT_T,), GPT_VOCAB).double()


def sequences(n, seed):
    """(ids, targets), both (n, 4) int64 for `tiny_gpt`."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, GPT_VOCAB, (n, GPT_T), generator=gen),
            torch.randint(0, GPT_VOCAB, (n, GPT_T), generator=gen))


def gpt_hessian(model: nn.Module, chunks, theta: torch.Tensor | None = None) -> torch.Tensor:
    """Autograd's full (P, P) Hessian of a GPT's mean per-sequence loss over `chunks` at
    theta (default: its parameters), on the written-out attention in eval mode: an oracle
    independent of the walk. The model's modes are restored."""
    from torch.func import functional_call

    from sgdwalk.functional.flat import ParamLayout
    from sgdwalk.losses import sequence_cross_entropy
    from sgdwalk.models import math_attention

    views = ParamLayout.of(model).views
    if theta is None:
        theta = flat_params(model)
    n = sum(len(y) for _, y in chunks)

    def loss(flat):
        total = 0.0
        for x, y in chunks:
            total = total + sequence_cross_entropy(functional_call(model, views(flat), (x,)),
                                                   y).sum()
        return total / n

    was = model.training
    model.eval()
    with math_attention(model):
        H = torch.autograd.functional.hessian(loss, theta)
    model.train(was)
    return H


@pytest.fixture(autouse=True)
def one_thread():
    """Tensors here are tiny: intra-op threads only add synchronisation, which on a shared
    2-core machine made a forward 10-100x slower. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def kit():
    """The helpers above, for tests (conftest modules are not importable by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        half_squared_error=half_squared_error,
        make_least_squares=make_least_squares,
        gd_step=gd_step,
        tiny_mlp=tiny_mlp,
        hand_mlp_loss=hand_mlp_loss,
        classification_data=classification_data,
        flat_params=flat_params,
        DropoutNet=DropoutNet,
        digits_tensors=digits_tensors,
        manual_run=manual_run,
        tiny_gpt=tiny_gpt,
        sequences=sequences,
        gpt_hessian=gpt_hessian,
    )
