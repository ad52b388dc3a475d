"""Gradient-noise probe: the size of SGD's mini-batch noise at the step.

The step's batch of B examples is cut, in its order, into m micro-batches of b = B // m
examples (the remainder is left out); their gradients g_1..g_m at theta_t give

    noise_trace   tr Cov[g_B] ~= s^2 b / B,  s^2 = 1/(m-1) sum_i ||g_i - mean_i g_i||^2
                  (`functional.minibatch_noise_trace`; unbiased for i.i.d. batches; a
                  partition of one batch gives E[s^2] = S^2 / b with S^2 the batch's own
                  per-example variance, so the same rescaling applies)
    noise_grad_sq ||g_t||^2
    noise_snr     ||g_t||^2 / tr Cov[g_B]

NaN for full-batch GD (no sampling noise) and when b < 2. Micro-batch gradients are
taken under the evaluator's BN policy ("batch": each micro-batch normalised by its own
statistics) with dropout off; the cost is about one training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgdwalk.probes.base import Probe
from sgdwalk.probes.checks import expect
from sgdwalk.probes.registry import register_probe

if TYPE_CHECKING:
    from sgdwalk.probes.context import StepContext

# torch, NumPy and the kernels are imported inside the methods that use them, so that
# registering this probe (which `import sgdwalk.config` does) imports no torch.


@dataclass(frozen=True)
class NoiseSettings:
    """The gradient-noise probe's walk.* keys."""

    noise_microbatches: int = 4  # micro-batches the step's batch is split into

    def __post_init__(self):
        expect(self.noise_microbatches >= 2, "noise_microbatches", ">= 2",
               self.noise_microbatches)


@register_probe("noise", schedule="every:10", preset="full", settings=NoiseSettings,
                summary="trace of the mini-batch gradient covariance")
class GradientNoise(Probe):
    """tr Cov[g_B] from micro-batch gradients of the step's batch.

    Args:
        schedule: step -> bool.
        microbatches: m >= 2 micro-batches per step.
    """

    sources = ("batch",)

    def __init__(self, schedule=None, microbatches: int = 4):
        super().__init__(schedule)
        if microbatches < 2:
            raise ValueError(f"GradientNoise: expected microbatches >= 2, got {microbatches}")
        self.m = int(microbatches)

    @classmethod
    def from_config(cls, cfg, schedule) -> GradientNoise:
        return cls(schedule, cfg.noise_microbatches)

    def observe(self, ctx: StepContext) -> dict:
        g = ctx.grad.double()
        g2 = float(g @ g)
        trace = self.trace(ctx)
        snr = g2 / trace if trace > 0 else math.nan
        return {"noise_trace": trace, "noise_grad_sq": g2, "noise_snr": snr}

    def trace(self, ctx: StepContext) -> float:
        from sgdwalk.functional.noise import minibatch_noise_trace

        if ctx.full_batch:
            return math.nan
        batches = ctx.evaluator.batches  # cuts any kind of batch into examples
        n = sum(len(y) for _, y in ctx.batch)
        b = n // self.m
        if b < 2:
            return math.nan
        whole = [batches.take(ctx.batch, 0, n)]
        groups = [[batches.take(whole, i * b, (i + 1) * b)] for i in range(self.m)]
        grads = ctx.evaluator.gradients(groups, ctx.theta)
        return minibatch_noise_trace(grads, b, ctx.batch_size)
