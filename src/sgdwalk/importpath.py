"""Import paths `package.module:factory`: how a config names code that lives outside sgdwalk.

A config is plain text, so a user's dataset or model is named by where to import it from,
never registered at run time: any process that reads the config (the CLI, a process-pool
sweep worker, a Ray worker) imports the same function, provided its module is importable
there (installed, or its folder on PYTHONPATH).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from sgdwalk.errors import ConfigError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
IMPORT_PATH = re.compile(rf"{_NAME}(\.{_NAME})*:{_NAME}(\.{_NAME})*")


def is_import_path(name: str) -> bool:
    """Whether a registry field holds an import path rather than a registered name."""
    return ":" in name


def resolve(name: str, registry: dict, field: str, expected: str) -> Callable:
    """What a registry field names: the function at an import path, or a registered one.

    Raises:
        ConfigError: an unknown name (the message lists the registered names and says an
        import path is accepted), or an import path that does not lead to a callable.
    """
    if is_import_path(name):
        return import_factory(name, field, expected)
    if name not in registry:
        raise ConfigError(f"{field}: expected one of {', '.join(sorted(registry))} or an "
                          f"import path module:factory, got {name!r}")
    return registry[name]


def import_factory(path: str, field: str, expected: str) -> Callable:
    """The callable named by `path` ("package.module:function", or ":Class.method").

    Args:
        path: the import path, as written in the config.
        field: the config key, for the message (e.g. "data.name").
        expected: what the callable must be, for the message (e.g. "a function
            (DataConfig) -> Dataset").

    Raises:
        ConfigError: one line for a malformed path, a module that is not importable, a
        missing attribute or one that is not callable. An error raised *inside* the user's
        module while it imports keeps its traceback: that is a bug in their code.
    """
    if not IMPORT_PATH.fullmatch(path):
        raise ConfigError(f"{field}: expected an import path module:factory such as "
                          f"mypackage.data:make_dataset, got {path!r}")
    module_name, _, attribute = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise  # the module exists but imports something missing: its own traceback
        raise ConfigError(f"{field}: expected {expected} from an importable module "
                          f"{module_name!r} (installed, or its folder on PYTHONPATH), got "
                          f"no module named {exc.name!r}") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{field}: expected {expected} named {attribute!r} in module "
                              f"{module_name}, got no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{field}: expected {expected} at {path}, got a "
                          f"{type(obj).__name__} (not callable)")
    return obj
