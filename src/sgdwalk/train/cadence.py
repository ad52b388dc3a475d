"""When the loop evaluates, checkpoints and commits rows: pure functions of the step count."""

from __future__ import annotations

from dataclasses import dataclass

from sgdwalk.config import TrainConfig

FULL_BATCH_EVAL_EVERY = 10  # steps: evaluations add at most a tenth of a GD step each
FULL_BATCH_CHECKPOINT_EVERY = 50  # steps: checkpoints add about a fiftieth


@dataclass(frozen=True)
class Due:
    evaluate: bool  # train/val/test evaluation of theta_step
    checkpoint: bool  # a checkpoint (it commits the buffered rows too)
    flush: bool  # commit the buffered rows


@dataclass(frozen=True)
class Cadence:
    """Cadences in steps. `due(step)` is asked after update `step - 1`, when `step` updates
    are done and the parameters are theta_step.

    Evaluations come every `eval_every` steps and at the end of a run that ends on an epoch
    boundary (a run cut by max_steps mid-epoch keeps its last epoch's evaluation);
    checkpoints every `checkpoint_every` steps (0: none), at each epoch end when
    `epoch_checkpoints`, and at the end.
    """

    steps_per_epoch: int
    total_steps: int
    eval_every: int
    checkpoint_every: int = 0
    epoch_checkpoints: bool = True
    flush_every: int = 50

    @classmethod
    def of(cls, cfg: TrainConfig, steps_per_epoch: int, total_steps: int,
           full_batch: bool = False) -> Cadence:
        """The train section's cadences. A full-batch run's epoch is one step, and one
        evaluation or one checkpoint costs about one GD step (digits MLP: 0.96 and 1.06 of a
        38 ms step), so there evaluations are at least FULL_BATCH_EVAL_EVERY steps apart and
        checkpoints every checkpoint_every (0: FULL_BATCH_CHECKPOINT_EVERY) steps."""
        if full_batch:
            return cls(steps_per_epoch, total_steps,
                       eval_every=cfg.eval_every_steps or max(cfg.eval_every,
                                                              FULL_BATCH_EVAL_EVERY),
                       checkpoint_every=cfg.checkpoint_every or FULL_BATCH_CHECKPOINT_EVERY,
                       epoch_checkpoints=False, flush_every=cfg.flush_every)
        return cls(steps_per_epoch, total_steps,
                   eval_every=cfg.eval_every_steps or cfg.eval_every * steps_per_epoch,
                   checkpoint_every=cfg.checkpoint_every, flush_every=cfg.flush_every)

    def due(self, step: int) -> Due:
        last = step == self.total_steps
        epoch_end = step % self.steps_per_epoch == 0
        evaluate = step % self.eval_every == 0 or (last and epoch_end)
        checkpoint = (last or (self.epoch_checkpoints and epoch_end)
                      or bool(self.checkpoint_every) and step % self.checkpoint_every == 0)
        return Due(evaluate, checkpoint, step % self.flush_every == 0)

    def epoch(self, step: int) -> int:
        """Epochs done after `step` updates."""
        return step // self.steps_per_epoch
