"""Checks of probe settings, failing with config.py's one-line form
"walk.<key>: expected X, got Y" (light: no torch, no config import)."""

from __future__ import annotations

import math

from sgdwalk.errors import ConfigError

FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: settings become tensors


def expect(ok: bool, key: str, expected: str, got) -> None:
    """Raise ConfigError("walk.<key>: expected <expected>, got <got>") unless `ok`."""
    if not ok:
        raise ConfigError(f"walk.{key}: expected {expected}, got {got}")


def expect_float32(settings, *keys: str) -> None:
    """Each named setting is finite and fits in float32."""
    for key in keys:
        value = getattr(settings, key)
        expect(math.isfinite(value) and abs(value) <= FLOAT32_MAX, key,
               "a finite number within float32 range (|x| <= 3.4e38)", value)


def expect_positive(settings, *keys: str) -> None:
    """Each named setting is an integer > 0."""
    for key in keys:
        value = getattr(settings, key)
        expect(value > 0, key, "an integer > 0", value)
