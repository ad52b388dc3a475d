"""The memory format of 4-d inputs in the evaluator's no-grad sweeps.

On CPU, a network with 2-d convolutions is probed with channels_last inputs by default
("auto"). PyTorch's CPU max-pool, BatchNorm and ReLU kernels are 2-7x faster on
channels_last tensors, which makes a VGG-11 forward about 2x faster (benchmarks/line_floor.py;
docs/performance.md). The numbers are those of the contiguous forward up to float32
round-off (a different summation order), not bit for bit. Derivatives (Hessian-vector
products, gradients, `jvp`) keep the inputs as given: their channels_last form was slower
or no faster. A model that cannot take channels_last inputs (e.g. it calls `.view` on a
feature map) is detected by a two-example trial forward at the first sweep, and probed with
contiguous inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sgdwalk.errors import ConfigError

MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
Chunks = list[tuple[torch.Tensor, torch.Tensor]]


class SweepFormat:
    """Whether sweeps feed 4-d inputs as channels_last: fixed by the choice, or ("auto")
    decided once, by a trial forward on the first 4-d input of a conv net on CPU.

    Args:
        choice: "auto" | "contiguous" | "channels_last".
        model: the probed module (is it a conv net?).
        device: where it runs.
    """

    def __init__(self, choice: str, model: torch.nn.Module, device: torch.device):
        if choice not in MEMORY_FORMATS:
            raise ConfigError(f"memory_format: expected one of {MEMORY_FORMATS}, got {choice!r}")
        convs = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        auto = choice == "auto" and convs and device.type == "cpu"
        # None: not decided yet ("auto" on a conv net on CPU, until the first 4-d input)
        self.channels_last: bool | None = None if auto else choice == "channels_last"

    def convert(self, chunks: Chunks, takes: Callable[[torch.Tensor], bool]) -> Chunks:
        """`chunks` with 4-d inputs in the sweep's format (as given when contiguous).

        `takes(x)` says whether the model runs on channels_last `x` (a two-example trial).
        Inputs already channels_last are not copied again.
        """
        if self.channels_last is None:
            x = next((x for x, _ in chunks if x.dim() == 4), None)
            if x is None:
                return chunks
            self.channels_last = takes(x[:2].contiguous(memory_format=torch.channels_last))
        if not self.channels_last:
            return chunks
        return [(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x, y)
                for x, y in chunks]
