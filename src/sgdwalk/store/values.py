"""Metric values -> rows: the conversion rules of the store, applied when a value is logged.

Scalars: bool -> 0.0/1.0, int -> float (exact below 2**53), NaN and None -> NULL (missing),
+-inf kept as +-inf (SQLite REAL holds IEEE infinities; a diverged loss stays visible).
Vectors (any 1-D array, tensor, list or tuple of numbers): float32 and float64 kept bit-for-bit;
float16, bfloat16, bool and 8/16-bit integers -> float32, wider integers -> float64.
"""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

from sgdwalk.errors import StoreError

RESERVED_NAMES = frozenset({"step", "run_id", "run_dir", "status"})
STORED_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}


class MetricBuffer:
    """Rows waiting for the next commit, converted on arrival (module docstring rules) so a
    later in-place change of a logged tensor or array cannot change what is stored.

    scalars: (step, name, value) rows; vectors: (step, name, dtype, length, blob) rows.
    kinds: name -> "scalar" | "vector" for every name committed or buffered, so a name keeps
    one kind.
    """

    def __init__(self, where: str, kinds: dict[str, str]):
        self.where = where
        self.kinds = kinds  # name -> "scalar" | "vector", committed or buffered
        self.scalars: list[tuple] = []
        self.vectors: list[tuple] = []

    def __len__(self) -> int:
        return len(self.scalars) + len(self.vectors)

    def clear(self) -> None:
        self.scalars = []
        self.vectors = []

    def add(self, step, values: dict) -> None:
        step = check_step(step, self.where)
        if not isinstance(values, dict):
            got = describe(values)
            raise StoreError(f"{self.where}: expected a dict of metric values, got {got}")
        scalars: list[tuple] = []
        vectors: list[tuple] = []
        pending = []  # 0-d tensors, read back in one transfer per device and dtype
        torch = sys.modules.get("torch")
        kinds, new_kinds = self.kinds, {}
        for name, v in values.items():
            t = type(v)
            if t is float:
                value = None if v != v else v
            elif t is int:
                value = float(v)
            elif t is bool:
                value = 1.0 if v else 0.0
            elif v is None:
                value = None
            elif torch is not None and isinstance(v, torch.Tensor) and v.ndim == 0:
                pending.append((name, v))
                value = ...
            else:
                value = _convert(name, v, self.where, torch)
            if type(value) is tuple:
                kind = "vector"
            else:
                kind = "scalar"
            if kinds.get(name) != kind:
                _check_name(name, kind, kinds.get(name), self.where)
                new_kinds[name] = kind
            if kind == "vector":
                vectors.append((step, name, *value))
            elif value is not ...:
                scalars.append((step, name, value))
        if pending:
            scalars.extend((step, n, value) for n, value in _read_tensors(pending, self.where))
        kinds.update(new_kinds)  # only now: a refused call leaves no trace
        self.scalars.extend(scalars)
        self.vectors.extend(vectors)


def check_step(step, where) -> int:
    if type(step) is not int:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            torch = sys.modules.get("torch")
            if not (
                torch is not None
                and isinstance(step, torch.Tensor)
                and step.numel() == 1
                and not step.is_floating_point()
                and step.dtype != torch.bool
            ):
                raise StoreError(f"{where}: expected an integer step >= -1, got {describe(step)}")
        step = int(step)
    if step < -1:  # -1: before the first update (the evaluation of theta_0)
        raise StoreError(f"{where}: expected an integer step >= -1, got {step}")
    return step


def _check_name(name, kind, known, where) -> None:
    if not isinstance(name, str) or not name:
        raise StoreError(f"{where}: expected a non-empty metric name (str), got {describe(name)}")
    if name in RESERVED_NAMES:
        raise StoreError(
            f"{where}: expected a metric name other than {', '.join(sorted(RESERVED_NAMES))}, "
            f"got {name!r}"
        )
    if known is not None and known != kind:
        raise StoreError(f"{where}: metric {name!r}: expected a {known} as before, got a {kind}")


def _convert(name, v, where, torch):
    """A float, None, or a vector row tail (dtype, length, blob)."""
    if torch is not None and isinstance(v, torch.Tensor):
        if v.ndim != 1:
            raise StoreError(
                f"{where}: metric {name!r}: expected a scalar or a 1-D tensor, got shape "
                f"{tuple(v.shape)}"
            )
        v = v.detach()
        if v.dtype in (torch.bfloat16, torch.float16):
            v = v.float()
        if v.is_complex():
            raise StoreError(f"{where}: metric {name!r}: expected real numbers, got {v.dtype}")
        return _vector_row(name, v.cpu().numpy(), where)
    if isinstance(v, (np.ndarray, list, tuple)):
        arr = np.asarray(v)
        if arr.ndim == 0:
            return _convert(name, arr.item(), where, torch)
        if arr.ndim != 1:
            raise StoreError(
                f"{where}: metric {name!r}: expected a scalar or a 1-D array, got shape {arr.shape}"
            )
        return _vector_row(name, arr, where)
    if isinstance(v, (numbers.Real, np.bool_)):
        value = float(v)
        return None if math.isnan(value) else value
    raise StoreError(
        f"{where}: metric {name!r}: expected a number, bool, None or 1-D array, got {describe(v)}"
    )


def _vector_row(name, arr: np.ndarray, where) -> tuple:
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "f" and size == 8:
        stored = "float64"
    elif (kind == "f" and size <= 4) or kind == "b" or (kind in "iu" and size <= 2):
        stored = "float32"  # exact: float32 holds every value of these types
    elif kind in "iu":
        stored = "float64"
    else:
        raise StoreError(
            f"{where}: metric {name!r}: expected a vector of real numbers, got dtype {arr.dtype}"
        )
    data = np.ascontiguousarray(arr, dtype=STORED_DTYPES[stored])
    return (stored, int(data.shape[0]), data.tobytes())


def _read_tensors(pending: list, where: str) -> list[tuple[str, float | None]]:
    import torch

    groups: dict = {}
    for name, t in pending:
        groups.setdefault((t.device, t.dtype), []).append((name, t))
    out = []
    for (_, dtype), items in groups.items():
        if dtype.is_complex:
            name = items[0][0]
            raise StoreError(f"{where}: metric {name!r}: expected a real number, got {dtype}")
        values = torch.stack([t.detach() for _, t in items]).tolist()
        for (name, _), value in zip(items, values):
            value = float(value)
            out.append((name, None if math.isnan(value) else value))
    return out


def describe(v) -> str:
    text = repr(v)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(v).__name__} {text}"
