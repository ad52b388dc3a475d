"""The probe extension point and the step context it observes.

A probe is a name, a schedule (step -> bool), what it requires of other probes, and
`observe(ctx) -> {name: value}`. Values are floats (stored as scalars) or 1-D tensors (stored
as per-step vectors). A probe that needs history across steps keeps it in its own state and
exposes `state_dict` / `load_state_dict`, so a resumed run continues exactly.

Probes of one step run after the probes they require (`requires`, declared when the probe
is registered: `sgdwalk.probes.registry`) and read their values in `ctx.results`. Work worth
sharing is a service of the context, computed by whichever probe asks first (the forward at
theta_{t+1} on the batch: `ctx.batch_losses_next()`). Probes evaluate moved parameters only
through `ctx.evaluator`, which never writes the model's parameters or BatchNorm statistics
(docs/bn_policy.md).

This module is light (torch is imported where it is used): probe files import it at
registration, which `import sgdwalk.config` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sgdwalk.probes.schedule import Every

if TYPE_CHECKING:
    import torch

    from sgdwalk.functional.flat import ParamLayout
    from sgdwalk.probes.evaluator import Data, LossEvaluator


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
    evaluator: LossEvaluator
    generator: torch.Generator  # reserved for probes; never the training RNG
    full_batch: bool = False  # the batch is the whole training split (GD): no batch noise
    results: dict[str, Any] = field(default_factory=dict)  # values of the probes run so far
    cache: dict[str, Any] = field(default_factory=dict)  # the services' shared work

    @property
    def grad_dot_update(self) -> float:
        """f'(0) = <g_t, u_t>, the slope of the batch line at a = 0 (free)."""
        if "grad_dot_update" not in self.cache:
            from sgdwalk.functional.vector import dot64

            self.cache["grad_dot_update"] = dot64(self.grad, self.update)
        return self.cache["grad_dot_update"]

    def batch_losses_next(self) -> torch.Tensor:
        """Per-example losses (N,) of the step's batch at theta_{t+1}, by a probing forward.

        Computed once per step, by the first probe that asks (the economy fit's f(1), the
        batch line's a = 1), so probes that share it need no order between them.
        """
        if "batch_losses_next" not in self.cache:
            self.cache["batch_losses_next"] = self.evaluator.losses(self.batch, self.theta_next)
        return self.cache["batch_losses_next"]

    def data(self, source: str) -> Data:
        """What the evaluator takes for `source`: the step's batch (its chunks), or the name
        of an evaluator source ("probe", "heldout")."""
        return self.batch if source == "batch" else source


class Probe:
    """Base class: subclasses are registered (`register_probe`, which sets `name` and
    `requires`), implement `observe`, and may keep state."""

    name: str = "probe"
    requires: tuple[str, ...] = ()  # probes whose results it reads (set by register_probe)
    tracks_history: bool = False  # True: `after` must see every step, scheduled or not
    # Data it evaluates on: "batch" (the step's own) or evaluator sources ("probe",
    # "heldout"); a Walk refuses to start when one of those was not given to it.
    sources: tuple[str, ...] = ()

    def __init__(self, schedule=None):
        self.schedule = schedule if schedule is not None else Every(1)

    @classmethod
    def from_config(cls, cfg, schedule) -> Probe:
        """The probe as a WalkConfig `cfg` describes it, on `schedule`."""
        return cls(schedule)

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
