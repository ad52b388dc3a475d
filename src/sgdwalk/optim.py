"""Optimizers by name and the isotropic gradient noise of the GD + noise trainer."""

from __future__ import annotations

import inspect

import torch

from sgdwalk.config import OptimConfig
from sgdwalk.errors import ConfigError
from sgdwalk.functional.noise import matched_isotropic_std, minibatch_noise_trace

# step(closure) re-evaluates the loss itself (LBFGS); SparseAdam needs sparse gradients
_UNFIT = tuple(getattr(torch.optim, name) for name in ("LBFGS", "SparseAdam")
               if hasattr(torch.optim, name))


def make_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    """The torch.optim class named by `cfg.optimizer`, with lr, weight decay, momentum."""
    cls = getattr(torch.optim, cfg.optimizer, None)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)) or (
        cls in _UNFIT or cls is torch.optim.Optimizer
    ):
        raise ConfigError(
            f"optim.optimizer: expected a torch.optim class such as SGD or Adam (one that "
            f"steps on dense gradients without a closure), got {cfg.optimizer!r}"
        )
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {"lr": cfg.lr}
    if "weight_decay" in accepted:
        kwargs["weight_decay"] = cfg.weight_decay
    elif cfg.weight_decay:
        raise ConfigError(
            f"optim.weight_decay: expected 0 for {cfg.optimizer}, which has no weight decay, "
            f"got {cfg.weight_decay}"
        )
    if "momentum" in accepted:
        kwargs["momentum"] = cfg.momentum
    elif cfg.momentum:
        raise ConfigError(
            f"optim.momentum: expected 0 for {cfg.optimizer}, which has no momentum, "
            f"got {cfg.momentum}"
        )
    kwargs.update(cfg.kwargs)
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"optim.kwargs: expected arguments {cfg.optimizer} accepts, got {exc}"
        ) from None


def gradient_samples(loss_of, theta: torch.Tensor, batches) -> torch.Tensor:
    """Gradients of `loss_of(theta)` per batch: a (len(batches), P) tensor.

    `loss_of(chunks)` returns a function of flat parameters (see LossEvaluator).
    """
    rows = []
    for batch in batches:
        point = theta.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_of([batch])(point), point)
        rows.append(g)
    return torch.stack(rows)


def isotropic_noise_std(
    cfg: OptimConfig, loss_of, theta: torch.Tensor, train_x, train_y, generator
) -> float:
    """Standard deviation of the per-coordinate Gaussian noise added to GD's gradient.

    matched: sqrt(tr(Cov[g_B]) / P), the isotropic noise with the same total variance as
        SGD's mini-batch noise at batch size B = cfg.noise_batch, estimated at theta from
        cfg.noise_samples mini-batches (sampled without replacement within each batch).
    original: cfg.noise_scale x max_j Var[g_B]_j, the study's recipe (a *variance* used
        as a standard deviation, as in the original code).
    """
    n = len(train_y)
    b = min(cfg.noise_batch, n)
    batches = []
    for _ in range(cfg.noise_samples):
        idx = torch.randperm(n, generator=generator)[:b].to(train_y.device)
        batches.append((train_x[idx], train_y[idx]))
    grads = gradient_samples(loss_of, theta, batches)
    if cfg.noise == "original":
        return cfg.noise_scale * float(grads.var(dim=0, unbiased=True).max())
    # The rows are gradients of batches of size b: the trace of their covariance is
    # tr(Cov[g_b]) directly (micro size = batch size).
    trace = minibatch_noise_trace(grads, b, b)
    return float(matched_isotropic_std(trace, theta.numel()))
