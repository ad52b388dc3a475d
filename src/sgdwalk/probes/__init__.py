"""Probes: what a walk measures at each step, one file per probe.

    base        the Probe base class (the extension point)
    context     the step context a probe observes, and the work probes share
    registry    @register_probe: name, schedule, preset, settings, requires
    presets     which registered probes a preset (or a WalkConfig) runs
    walk        `Walk`: orders the probes and runs them around any optimizer step
    attach      the same through an optimizer's step hooks
    evaluator   losses at moved parameters, on scratch copies
    bn_policy   BatchNorm (and dropout) while probing
    memory_format  channels_last inputs for no-grad sweeps of conv nets on CPU
    sharded     the walk on a model sharded by FSDP2: local shards, sums over ranks

Importing the package registers the built-in probes below (light: no torch at import);
a new built-in probe is its file, its tests and its name here.
"""

from sgdwalk.probes import (  # noqa: F401  (registration)
    barrier,
    curvature,
    economy,
    line,
    noise,
    precond_sharpness,
    sharpness,
    trajectory,
)
