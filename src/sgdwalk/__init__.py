"""sgdwalk: watch SGD walk through a network's loss landscape.

    from sgdwalk import Walk                 # the probes around any optimizer step
    from sgdwalk.experiment import train     # a run from its config: the study's trainers
    from sgdwalk import load                 # stored runs: .runs, .steps, .vectors(name)
"""

__version__ = "0.1.0"

# name -> module that defines it. Imported lazily, so `import sgdwalk` stays light (no
# torch or pandas until one of these is asked for).
_EXPORTS = {
    "Walk": "sgdwalk.probes.walk",
    "load": "sgdwalk.store",
    "load_config": "sgdwalk.config",
    "load_vectors": "sgdwalk.store",
    "read_run": "sgdwalk.store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sgdwalk' has no attribute {name!r}")
