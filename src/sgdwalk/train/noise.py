"""The noise level of GD + noise, estimated by training code at theta_0 with the training loss.

The estimate depends on the model, the training loss, the training split and the seed, and
on nothing the walk sets: the gradients are those a training step computes (train-mode
forwards: BatchNorm normalises by each batch, dropout is on), so measuring settings such as
`walk.bn_policy` cannot change a trajectory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call

from sgdwalk.config import OptimConfig
from sgdwalk.functional.noise import (
    matched_isotropic_std,
    minibatch_noise_trace,
    per_coordinate_variance,
)


def minibatch_gradients(model: torch.nn.Module, loss_fn: Callable, batches) -> torch.Tensor:
    """Gradients of the training loss on each batch at the model's parameters: (m, P).

    Row i is grad_theta loss_fn(model(x_i), y_i), flattened in `model.parameters()` order
    (trainable ones; zeros for a parameter the loss does not reach). Forwards run in train
    mode on scratch copies of the buffers, so BatchNorm's running statistics are untouched;
    the global RNG (dropout) is forked, so the training stream is as if nothing ran.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    scratch = {name: b.detach().clone() for name, b in model.named_buffers()}
    was = model.training
    rows = []
    devices = [params[0].device.index or 0] if params[0].is_cuda else []
    with torch.random.fork_rng(devices=devices):
        model.train()
        try:
            for x, y in batches:
                loss = loss_fn(functional_call(model, scratch, (x,)), y)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                       for g, p in zip(grads, params)]))
        finally:
            model.train(was)
    return torch.stack(rows)


def isotropic_noise_std(cfg: OptimConfig, model: torch.nn.Module, loss_fn: Callable,
                        x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
    """Standard deviation of the per-coordinate Gaussian noise added to GD's gradient.

    From cfg.noise_samples mini-batches of b = min(cfg.noise_batch, n) examples (each drawn
    without replacement by `generator`) and their gradients g_1..g_m at the current theta:
    matched: sigma = sqrt(tr Cov[g_b] / P), the isotropic noise with the total variance of
        SGD's mini-batch noise at batch size b, tr Cov estimated by
        1/(m - 1) sum_i |g_i - mean g|^2 (functional.noise.minibatch_noise_trace).
    original: sigma = cfg.noise_scale x max_j Var_i[g_ij] (unbiased, in float64), the
        study's recipe (a *variance* used as a standard deviation, as in the original code).
    """
    n = len(y)
    b = min(cfg.noise_batch, n)
    batches = []
    for _ in range(cfg.noise_samples):
        idx = torch.randperm(n, generator=generator, device=generator.device)[:b]
        idx = idx.to(y.device)
        batches.append((x[idx], y[idx]))
    grads = minibatch_gradients(model, loss_fn, batches)
    if cfg.noise == "original":
        return cfg.noise_scale * float(per_coordinate_variance(grads).max())
    # rows are gradients of batches of size b: their covariance trace is tr Cov[g_b] directly
    trace = minibatch_noise_trace(grads, b, b)
    return float(matched_isotropic_std(trace, grads.shape[1]))
