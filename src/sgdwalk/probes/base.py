"""The probe extension point and the step context it observes.

A probe is a name, a schedule (step -> bool) and `observe(ctx) -> {name: value}`. Values
are floats (stored as scalars) or 1-D tensors (stored as per-step vectors). A probe that
needs history across steps keeps it in its own state and exposes `state_dict` /
`load_state_dict`, so a resumed run continues exactly.

Probes of one step run in list order and see the values of earlier probes in
`ctx.results`; work worth sharing (the forward at theta_{t+1} on the batch) goes through
`ctx.cache`. Probes evaluate moved parameters only through `ctx.evaluator`, which never
writes the model's parameters or BatchNorm statistics (docs/bn_policy.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sgdwalk.functional.flat import ParamLayout
from sgdwalk.functional.vector import dot64
from sgdwalk.probes.schedule import Every

BATCH_LOSSES_NEXT = "batch_losses_next"  # cache key of StepContext.batch_losses_next


@dataclass
class StepContext:
    """Everything a probe may look at for the update theta_t -> theta_{t+1}.

    Flat vectors have `layout.numel` entries. `grad` is the mini-batch gradient of the mean
    loss at theta_t *without* weight decay; `update` is u_t = theta_next - theta, the step
    the optimizer actually applied (momentum, weight decay, clipping and noise included).
    """

    step: int  # t, counted from 0
    epoch: int  # 0-based epoch of this step
    lr: float  # learning rate of the first parameter group
    weight_decay: float  # weight decay of the first parameter group
    batch_size: int  # examples in the step's batch (all chunks together)
    loss: float  # f_t(0): mean loss of the step's batch at theta_t (training forward)
    theta: torch.Tensor  # theta_t
    theta_next: torch.Tensor  # theta_{t+1}
    update: torch.Tensor  # u_t
    grad: torch.Tensor  # g_t
    batch: list[tuple[torch.Tensor, torch.Tensor]]  # the step's batch, as (x, y) chunks
    layout: ParamLayout
    evaluator: Any  # sgdwalk.probes.evaluator.LossEvaluator
    generator: torch.Generator  # reserved for probes; never the training RNG
    full_batch: bool = False  # the batch is the whole training split (GD): no batch noise
    results: dict[str, Any] = field(default_factory=dict)  # values of earlier probes this step
    cache: dict[str, Any] = field(default_factory=dict)  # shared work (e.g. f(1) on the batch)

    @property
    def grad_dot_update(self) -> float:
        """f'(0) = <g_t, u_t>, the slope of the batch line at a = 0 (free)."""
        if "grad_dot_update" not in self.cache:
            self.cache["grad_dot_update"] = dot64(self.grad, self.update)
        return self.cache["grad_dot_update"]

    def batch_losses_next(self) -> torch.Tensor:
        """Per-example losses (N,) of the step's batch at theta_{t+1}, by a probing forward.

        Computed once per step and shared (the economy fit's f(1), the batch line's a = 1).
        """
        if BATCH_LOSSES_NEXT not in self.cache:
            self.cache[BATCH_LOSSES_NEXT] = self.evaluator.losses(self.batch, self.theta_next)
        return self.cache[BATCH_LOSSES_NEXT]


class Probe:
    """Base class: subclasses set `name`, implement `observe`, and may keep state."""

    name: str = "probe"
    tracks_history: bool = False  # True: `after` must see every step, scheduled or not
    # Data it evaluates on: "batch" (the step's own) or evaluator sources ("probe",
    # "heldout"); a Walk refuses to start when one of those was not given to it.
    sources: tuple[str, ...] = ()

    def __init__(self, schedule=None):
        self.schedule = schedule if schedule is not None else Every(1)

    def observe(self, ctx: StepContext) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def header(self) -> dict[str, Any]:
        """Values known before the first step (e.g. the line grid), logged at step -1."""
        return {}

    def after(self, ctx: StepContext) -> None:
        """Called after every step that has a context (every step if `tracks_history`)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schedule={self.schedule})"
