"""sgdwalk: watch SGD walk through a network's loss landscape."""

__version__ = "0.1.0"

__all__ = ["load_sweep", "load_vectors"]


def __getattr__(name):
    # Lazy, so `import sgdwalk` stays light (no pandas or torch until a table is asked for).
    if name in ("load_sweep", "load_vectors"):
        from sgdwalk.studies import tables

        return getattr(tables, name)
    raise AttributeError(f"module 'sgdwalk' has no attribute {name!r}")
