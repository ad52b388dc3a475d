"""Training: the loop that steps an optimizer, and the small parts it is made of.

    loop.py         Trainer: batch -> forward/backward -> hooks.before_step -> transforms
                    -> optimizer.step() -> hooks.after_step -> log -> evaluate/checkpoint
    batches.py      the global batch of every update (SGD mini-batches, GD chunks)
    transforms.py   gradient changes between the hooks and the step: scale, clip, noise
    noise.py        GD + noise's std, estimated at theta_0 with the training loss
    hooks.py        StepHooks: what the loop calls around a step (the walk is one)
    cadence.py      when evaluations, checkpoints and commits are due
    evaluate.py     loss and accuracy on whole splits
    optim.py        torch.optim classes by name
    distributed.py  data parallelism under torchrun
    signals.py      SIGINT/SIGTERM: checkpoint and stop

Nothing here imports the probes: the walk reaches the loop only as `StepHooks`.
`sgdwalk.experiment` builds a Trainer (data, model, walk, store) from a RunConfig.
"""

from sgdwalk.train.hooks import NoHooks, StepHooks
from sgdwalk.train.loop import Outcome, Trainer
from sgdwalk.train.transforms import AddIsotropicNoise, ClipByGlobalNorm, Scale, chain

__all__ = ["AddIsotropicNoise", "ClipByGlobalNorm", "NoHooks", "Outcome", "Scale", "StepHooks",
           "Trainer", "chain"]
