"""A sink that logs the walk's values to Weights & Biases (online or offline).

    walk = Walk(model, probes="full", sink=WandbSink(project="walk", mode="offline"))

W&B refuses a `step=` that goes backwards, and the walk's values do: a barrier of step t is
known only at step t + k. So every value is logged *without* W&B's own step, together
with the metric `walk_step`, declared as the x axis of all `prefix/*` metrics
(`wandb.define_metric(..., step_metric="walk_step")`): each point lands at its own step,
whatever order it arrives in. Per-step vectors are logged as histograms.
"""

from __future__ import annotations

import math

import wandb


class WandbSink:
    """callable(step, values) for `Walk(sink=...)`; `finish()` ends a run it started.

    Args:
        run: an active `wandb.Run`; None: start one with `wandb.init(**init_kwargs)`.
        prefix: the metrics' namespace.
    """

    def __init__(self, run=None, prefix: str = "walk", **init_kwargs):
        self.owns_run = run is None
        self.run = run if run is not None else wandb.init(**init_kwargs)
        self.prefix = prefix
        self.run.define_metric("walk_step")
        self.run.define_metric(f"{prefix}/*", step_metric="walk_step")

    def __call__(self, step: int, values: dict) -> None:
        if step < 0:
            return
        row = {"walk_step": step}
        for name, value in values.items():
            key = f"{self.prefix}/{name}"
            if hasattr(value, "dim"):
                if value.numel():
                    row[key] = wandb.Histogram(value.detach().float().cpu().numpy())
            elif value is not None and math.isfinite(float(value)):
                row[key] = float(value)
        self.run.log(row)

    def finish(self) -> None:
        if self.owns_run:
            self.run.finish()
