"""The errors sgdwalk raises on purpose.

Each carries a one-line message of the form "<where>: expected <X>, got <Y>". The CLI prints
that line and exits with status 2; anything else is a bug and keeps its traceback.
"""


class SgdwalkError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class ConfigError(SgdwalkError):
    """A configuration value, override or preset name is invalid."""


class DataError(SgdwalkError):
    """A dataset is missing, corrupt, of the wrong format or failed its checksum."""


class StoreError(SgdwalkError):
    """A run directory or metric store cannot be read or written."""


class RunLockedError(StoreError):
    """A run is being written by another process (its writer lock is held)."""


class IncompleteRunError(StoreError):
    """A folder holds the start of a run but not a whole one (its maker was killed while
    making it, before runs were made whole): readers of many runs skip it with a note."""


class SgdwalkWarning(UserWarning):
    """Something the user should know that does not stop the command (a damaged checkpoint
    passed over for the previous one, a resume on another thread count); the CLI prints it
    as one line `sgdwalk: warning: <message>`."""
