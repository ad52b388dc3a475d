"""A PyTorch Lightning callback that runs a `Walk` around every optimizer step.

    trainer = lightning.Trainer(callbacks=[WalkCallback(probes="economy", loss_fn=...)])

Lightning calls the optimizer with a closure (forward and backward run *inside*
`optimizer.step`), so a step pre-hook would see stale gradients: the snapshot of theta_t
and g_t is taken in `on_before_optimizer_step` (after backward, clipping and unscaling),
and the probes run in the optimizer's step post-hook. The batch comes from
`on_train_batch_start` (as the walk takes it: (x, y), or a dict with `labels=` or
`per_example_loss=`) and the loss from `on_before_backward`; with
`accumulate_grad_batches` the micro-batches add up into one walk step.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl

from sgdwalk.probes.walk import Walk


class WalkCallback(pl.Callback):
    """Build `Walk(pl_module, **walk_kwargs)` at fit start and measure every optimizer step.

    Args:
        probes, loss_fn, labels, per_example_loss, probe_set, sink, ...: as for
            `sgdwalk.Walk`; loss_fn takes the module's output and the target and returns
            per-example losses.
        batch_fn: the training batch -> the batch the walk takes (default: as it comes).
    """

    def __init__(self, batch_fn=None, **walk_kwargs):
        super().__init__()
        self.walk_kwargs = walk_kwargs
        self.batch_fn = batch_fn
        self.walk: Walk | None = None
        self._handles: list = []
        self._batches: list = []  # the micro-batches of the coming optimizer step
        self._losses: list[tuple[float, int]] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.walk = Walk(pl_module, **self.walk_kwargs)
        for optimizer in trainer.optimizers:
            self._handles.append(optimizer.register_step_post_hook(self._after))

    def on_fit_end(self, trainer, pl_module) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batches.append(self.batch_fn(batch) if self.batch_fn is not None else batch)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        # Lightning divides the loss by accumulate_grad_batches before backward: undo it so
        # the recorded value is the micro-batch's mean loss.
        scale = trainer.accumulate_grad_batches
        n = sum(len(y) for _, y in self.walk.batches.chunks(self._batches[-1]))
        self._losses.append((float(loss.detach()) * scale, n))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        n = sum(size for _, size in self._losses)
        loss = sum(v * size for v, size in self._losses) / n if n else math.nan
        self.walk.before_step(loss, self._batches)

    def _after(self, optimizer, args, kwargs) -> None:
        self._batches, self._losses = [], []
        self.walk.after_step(optimizer)

    def state_dict(self) -> dict:
        return {"walk": self.walk.state_dict()} if self.walk is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending_state = state_dict.get("walk")

    def setup(self, trainer, pl_module, stage) -> None:
        pending = getattr(self, "_pending_state", None)
        if pending is not None and self.walk is not None:
            self.walk.load_state_dict(pending)
