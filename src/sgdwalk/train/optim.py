"""Optimizers by name: the torch.optim class that applies each update."""

from __future__ import annotations

import inspect

import torch

from sgdwalk.config import OptimConfig
from sgdwalk.errors import ConfigError

# step(closure) re-evaluates the loss itself (LBFGS); SparseAdam needs sparse gradients
_UNFIT = tuple(getattr(torch.optim, name) for name in ("LBFGS", "SparseAdam")
               if hasattr(torch.optim, name))


def make_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    """The torch.optim class named by `cfg.optimizer`, with lr, weight decay, momentum.

    `cfg.weight_decay_on = "matrices"` makes two parameter groups as nanoGPT's
    `configure_optimizers`: tensors of 2 or more dimensions (weights, kernels, embeddings)
    decayed by `cfg.weight_decay`, the rest (biases, norm parameters) not decayed.
    """
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
    params = list(params)
    if cfg.weight_decay_on == "matrices" and "weight_decay" in accepted:
        params = _decay_groups(params)
    if kwargs.get("capturable") and _any_on(params, "cpu"):
        # config.py refuses it for train.device = "cpu"; "auto" resolves to the CPU here
        raise ConfigError("optim.kwargs.capturable: expected false or unset for parameters "
                          "on the CPU (torch steps capturable optimizers on accelerators "
                          "only), got true")
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"optim.kwargs: expected arguments {cfg.optimizer} accepts, got {exc}"
        ) from None


def _decay_groups(params: list[torch.Tensor]) -> list[dict]:
    """nanoGPT's groups: tensors of >= 2 dimensions first (the optimizer's weight decay),
    then the rest with weight_decay 0; an empty group is left out."""
    groups = [{"params": [p for p in params if p.dim() >= 2]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _any_on(params, device_type: str) -> bool:
    """Whether any parameter (tensors or param-group dicts) is on a `device_type` device."""
    tensors = (t for p in params for t in (p["params"] if isinstance(p, dict) else [p]))
    return any(t.device.type == device_type for t in tensors)
