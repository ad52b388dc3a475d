"""The walk inside the trainers researchers use, and its values in their dashboards.

Each module imports its framework only when used, and each framework is an optional extra
(`pip install "sgdwalk[lightning]"`, `[transformers]`, `[tensorboard]`, `[wandb]`):

    lightning.WalkCallback       a Lightning `Callback` (sees the batch and the loss)
    transformers.WalkCallback    a Hugging Face `TrainerCallback` (probe set only)
    tensorboard.TensorBoardSink  `SummaryWriter.add_scalar` per stored name
    wandb.WandbSink              `wandb.log` with the walk's step as its own x axis

A plain loop needs none of them: `Walk.step`, `Walk.before_step/after_step`, or
`Walk.attach(optimizer)` (sgdwalk.probes.attach). See docs/own_training.md.
"""
