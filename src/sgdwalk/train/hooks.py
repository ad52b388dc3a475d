"""What the training loop calls around each optimizer step, and nothing else it knows of.

The walk (`sgdwalk.probes.walk.Walk`) is one such object; the loop sees only this protocol,
so training code never imports the probes, and a run without probes passes `NoHooks()`.
"""

from __future__ import annotations

from typing import Protocol

import torch

Chunks = list[tuple[torch.Tensor, torch.Tensor]]


class StepHooks(Protocol):
    """Called by the loop between backward and `optimizer.step()`, and right after it.

    Optional: hooks with a method `wants_step_graph() -> bool` are asked before each
    update's forward whether they want the step's graph; when they do and the loop can keep
    it (one chunk, one process), `before_step` gets `step_graph=` a
    `sgdwalk.functional.hvp.StepGraph` (H v at theta_t, valid until `after_step` returns).
    """

    def before_step(self, loss: float, batch: Chunks, batch_size: int | None = None,
                    full_batch: bool = False) -> None:
        """After backward: `loss` is the mean over the global batch, `.grad` holds g_t
        (before any gradient transform), `batch` the chunks that made it."""

    def after_step(self, optimizer: torch.optim.Optimizer) -> dict:
        """After `optimizer.step()`: the parameters hold theta_{t+1}."""

    def state_dict(self) -> dict:
        """What a checkpoint must hold to continue the hooks exactly."""

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""


class NoHooks:
    """Hooks that do nothing: a run measured by nothing."""

    def before_step(self, loss, batch, batch_size=None, full_batch=False) -> None:
        return None

    def after_step(self, optimizer) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None
