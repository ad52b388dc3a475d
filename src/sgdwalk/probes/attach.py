"""Attach a `Walk` to any optimizer through its step hooks: no edit of the training loop.

    walk = Walk(model, probes="line", probe_set=(x_probe, y_probe))
    hooks = walk.attach(optimizer)          # or attach(walk, optimizer)
    for x, y in loader:                     # the user's loop, unchanged ...
        loss = loss_fn(model(x), y).mean()
        loss.backward()
        hooks.record(loss, (x, y))          # ... but for this optional line
        optimizer.step()
        optimizer.zero_grad()
    hooks.remove()

`Optimizer.register_step_pre_hook` snapshots theta_t and the gradient the optimizer is about
to use; `register_step_post_hook` measures u_t = theta_{t+1} - theta_t and runs the probes.
So the walk's step is the *optimizer* step, whatever happens around it:

- gradient accumulation: one walk step per optimizer step, over the accumulated gradient;
- gradient clipping and `GradScaler`: the hooks fire inside `optimizer.step()`, after
  clipping and after the scaler's unscaling, so g_t is the gradient the optimizer applies
  (never the scaled one); a step the scaler skips (inf/NaN) is not a walk step, and the
  batches recorded for it are dropped: `record` sees that the gradient was not finite at
  the last record and is again, so the step between was skipped;
- lr schedulers, momentum, Adam(W), parameter groups: u_t is the update as applied, and the
  stored lr is the first parameter group's at the step;
- frozen parameters are not in the walk's layout (`ParamLayout.of` keeps requires_grad).

Without `record`, the walk knows neither the batch nor its loss: probes that evaluate on
the step's batch (economy, the batch line, curvature, gradient noise) are refused with a
one-line error at the first step; trajectory, probe-set lines, sharpness and barriers on
the probe set need nothing more.
"""

from __future__ import annotations

import math

from sgdwalk.errors import ConfigError


class Attachment:
    """The hooks of one walk on one optimizer; `remove()` detaches them."""

    def __init__(self, walk, optimizer):
        self.walk = walk
        self.optimizer = optimizer
        self._loss = math.nan
        self._batches: list = []  # the micro-batches recorded since the last step
        self._n = 0  # their examples
        self._overflow = False  # the gradient was not finite at the last record
        self._batch_probes = [p.name for p in walk.probes if "batch" in p.sources]
        self._handles = [
            optimizer.register_step_pre_hook(self._before),
            optimizer.register_step_post_hook(self._after),
        ]

    def record(self, loss, batch) -> None:
        """Give the walk this step's loss and batch ((x, y), or a dict: as the walk takes
        them); with gradient accumulation call it once per micro-batch: they add up until
        the optimizer steps."""
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        finite = self.walk.grads_finite()
        if self._overflow and finite:  # a scaler skipped the step of the batches so far
            self._batches, self._n = [], 0
        self._overflow = not finite
        n_new = sum(len(y) for _, y in self.walk.batches.chunks(batch))
        if self._batches:  # accumulation: the mean over micro-batches, weighted by size
            self._loss = (self._loss * self._n + value * n_new) / (self._n + n_new)
        else:
            self._loss = value
        self._batches.append(batch)
        self._n += n_new

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _before(self, optimizer, args, kwargs) -> None:
        if self._batch_probes and not self._batches and self.walk.wants():
            raise ConfigError(
                f"Walk.attach: probes {', '.join(self._batch_probes)} evaluate on the step's "
                f"batch: expected hooks.record(loss, batch) before optimizer.step(), got no "
                f"batch (or switch them off, e.g. walk economy='off', line_sources=('probe',))"
            )
        self.walk.before_step(self._loss, self._batches)

    def _after(self, optimizer, args, kwargs) -> None:
        self._loss, self._batches, self._n, self._overflow = math.nan, [], 0, False
        self.walk.after_step(optimizer)


def attach(walk, optimizer) -> Attachment:
    """Run `walk` around every `optimizer.step()`; see the module docstring."""
    return Attachment(walk, optimizer)
