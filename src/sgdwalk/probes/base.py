"""The probe extension point (the context it observes: `sgdwalk.probes.context`).

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

This module is light (no torch, no dataclasses): every probe file imports it, and
`import sgdwalk.config` imports every probe file to read the registrations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sgdwalk.probes.context import StepContext


class Probe:
    """Base class: subclasses are registered (`register_probe`, which sets `name` and
    `requires`), implement `observe`, and may keep state."""

    name: str = "probe"
    requires: tuple[str, ...] = ()  # probes whose results it reads (set by register_probe)
    tracks_history: bool = False  # True: `after` must see every step, scheduled or not
    # Data it evaluates on: "batch" (the step's own) or evaluator sources ("probe",
    # "heldout"); a Walk refuses to start when one of those was not given to it.
    sources: tuple[str, ...] = ()
    # True: observe uses `ctx.step_graph` when there is one, and the walk asks the training
    # loop to keep the step's graph at the steps where this probe is due
    takes_step_graph: bool = False

    def __init__(self, schedule=None):
        from sgdwalk.probes.schedule import Every

        self.schedule = schedule if schedule is not None else Every(1)  # default: every step

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
