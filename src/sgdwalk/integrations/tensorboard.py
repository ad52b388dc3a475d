"""A sink that writes the walk's values to TensorBoard, one scalar series per stored name.

    walk = Walk(model, probes="line", sink=TensorBoardSink("runs/tb"))

Scalars go through `SummaryWriter.add_scalar(tag, value, step)` under `prefix/name`; a
per-step vector (e.g. per-layer values) goes through `add_histogram`. Values that arrive
late (a barrier for step t is known only at step t + k) are written at their own step:
TensorBoard orders points by step, not by arrival. The header row (step -1: the line grid)
is not a time series and is skipped.
"""

from __future__ import annotations

import math

from torch.utils.tensorboard import SummaryWriter


class TensorBoardSink:
    """callable(step, values) for `Walk(sink=...)`; `close()` flushes the event file."""

    def __init__(self, log_dir=None, writer: SummaryWriter | None = None, prefix: str = "walk"):
        self.writer = writer if writer is not None else SummaryWriter(log_dir)
        self.prefix = prefix

    def __call__(self, step: int, values: dict) -> None:
        if step < 0:
            return
        for name, value in values.items():
            tag = f"{self.prefix}/{name}"
            if hasattr(value, "dim"):
                if value.numel():
                    self.writer.add_histogram(tag, value.detach().float().cpu(), step)
            elif value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
