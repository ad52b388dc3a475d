"""The step context: everything a probe may look at for one update, and the work probes
share (computed by whichever probe asks first, so sharing needs no order between them).

Light (torch only in annotations): probe files import it for their annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from sgdwalk.functional.flat import ParamLayout
    from sgdwalk.functional.hvp import StepGraph
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
    # the weight decay the optimizer applies to each walked parameter (its param group's
    # `weight_decay`, 0 for one in no group), in `layout.names` order; one value repeated
    # when a single group holds them all
    weight_decays: tuple[float, ...]
    batch_size: int  # examples in the step's batch (all chunks together)
    loss: float  # f_t(0): mean loss of the step's batch at theta_t (training forward)
    theta: torch.Tensor  # theta_t
    theta_next: torch.Tensor  # theta_{t+1}
    update: torch.Tensor  # u_t
    grad: torch.Tensor  # g_t
    batch: list[tuple]  # the step's batch, as chunks of the walk's BatchFormat (probes/batch.py)
    layout: ParamLayout
    evaluator: LossEvaluator
    generator: torch.Generator  # reserved for probes; never the training RNG
    full_batch: bool = False  # the batch is the whole training split (GD): no batch noise
    # the optimizer that made the step, read only (its state after the step: e.g. Adam's
    # preconditioner); None when after_step was given none
    optimizer: torch.optim.Optimizer | None = None
    params: list[torch.Tensor] = field(default_factory=list)  # the trained ones, layout order
    results: dict[str, Any] = field(default_factory=dict)  # values of the probes run so far
    cache: dict[str, Any] = field(default_factory=dict)  # the services' shared work
    # the step's gradient with its graph kept by the training loop (H v at theta_t by one
    # backward: `functional.hvp.StepGraph`), at steps where a probe took it; else None
    step_graph: StepGraph | None = None
    # sums a per-layer dot table over ranks in place (a sharded walk: one all-reduce);
    # None: one process holds the whole vectors
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None

    def layer_dots(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """D[s, j] = <a_j, b_j> over layer s, (layers, pairs) float64: every dot product of
        the flat vectors goes through here (`functional.vector.segment_pair_dots`). On a
        sharded model the vectors are local shards: the table is the partial sums of this
        rank, summed over ranks by `reduce` (ask for all of a step's pairs at once)."""
        from sgdwalk.functional.vector import segment_pair_dots

        dots = segment_pair_dots(pairs, self.layout.layer_bounds)
        return dots if self.reduce is None else self.reduce(dots)

    @property
    def grad_dot_update(self) -> float:
        """f'(0) = <g_t, u_t>, the slope of the batch line at a = 0 (free).

        Per-layer float64 sums added over layers, the trajectory's own reduction (which
        fills this cache when it runs): a probe reads the same bits with or without it."""
        if "grad_dot_update" not in self.cache:
            layers = self.layer_dots([(self.grad, self.update)])
            self.cache["grad_dot_update"] = float(layers[:, 0].cpu().numpy().sum())
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
