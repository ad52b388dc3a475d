"""sgdwalk: watch SGD walk through a network's loss landscape."""

__version__ = "0.1.0"
