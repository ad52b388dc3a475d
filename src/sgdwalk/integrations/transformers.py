"""A Hugging Face `TrainerCallback` that runs a `Walk` around every optimizer step.

    trainer = transformers.Trainer(..., callbacks=[WalkCallback(probes=cfg, probe_set=...)])

The Trainer tells a callback when the optimizer is about to step and when it has stepped
(`on_pre_optimizer_step`, after clipping; `on_optimizer_step`), but never which batch it
used nor its loss. So this walk probes on the fixed probe set only: trajectory, the line
on the probe (or heldout) set, sharpness and barriers; probes that need the step's batch
(economy, the batch line, curvature along the step, gradient noise) are refused at the
start with a one-line error. Its `loss` argument is NaN.

The probe set is read as any walk reads a batch (`sgdwalk.probes.batch`): (x, y) tensors
with `loss_fn(model(x), y)`, or, as the Trainer calls the model, dicts with
`per_example_loss=` (e.g. `lambda model, batch: model(**batch, reduction="none").loss`
for a model that can give its loss per example) or `labels=` with a `loss_fn`. A model
whose `.loss` is only the batch mean is refused at the first probe, in one line.
"""

from __future__ import annotations

import math

import transformers

from sgdwalk.errors import ConfigError
from sgdwalk.probes.walk import Walk


class WalkCallback(transformers.TrainerCallback):
    """Build `Walk(model, **walk_kwargs)` at train start and measure every optimizer step."""

    def __init__(self, **walk_kwargs):
        self.walk_kwargs = walk_kwargs
        self.walk: Walk | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.walk = Walk(model, **self.walk_kwargs)
        batch_probes = [p.name for p in self.walk.probes if "batch" in p.sources]
        if batch_probes:
            raise ConfigError(
                f"transformers.WalkCallback: expected probes on the probe set only (the Trainer "
                f"shows a callback no batch), got {', '.join(batch_probes)} on the step's batch"
            )

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.walk.before_step(math.nan, [])

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.walk.after_step(_torch_optimizer(optimizer))


def _torch_optimizer(optimizer):
    """accelerate wraps the optimizer; the walk reads the torch one's param groups."""
    return getattr(optimizer, "optimizer", optimizer)
