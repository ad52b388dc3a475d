"""The structure of a checkpoint's state, checked against the run before anything is loaded.

A checkpoint that passed its checksum and names this run can still be wrong for the code
that reads it: written by another version, edited by hand, forged with a matching sum. Each
part is checked against what the trainer holds now: every expected key, the model's and the
optimizer's tensors of equal shape and dtype, `step` within [0, total steps], the data
order a permutation of the training split, the generator states present. A mismatch is one
StoreError line naming the part, never a traceback from deep inside `load_state_dict`.
"""

from __future__ import annotations

import torch

from sgdwalk.errors import StoreError

KEYS = ("step", "model", "optimizer", "data", "transforms", "hooks", "rng", "last_finite",
        "threads")


def check_state(state: dict, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                n_train: int, total_steps: int, file_step: int, where: str) -> None:
    """Raise StoreError("<where>: <part>: expected X, got Y") for the first part of `state`
    that the run cannot load."""
    missing = [k for k in KEYS if k not in state]
    extra = sorted(str(k) for k in state if k not in KEYS)
    if missing or extra:
        got = (f"missing {', '.join(missing)}" if missing else "") + \
              ("; " if missing and extra else "") + (f"unknown {', '.join(extra)}" if extra else "")
        raise StoreError(f"{where}: expected the keys {', '.join(KEYS)}, got {got}")
    step = state["step"]
    if type(step) is not int or not 0 <= step <= total_steps:
        raise StoreError(f"{where}: step: expected an integer in [0, {total_steps}] (the run's "
                         f"total steps), got {step!r}")
    if step != file_step:
        raise StoreError(f"{where}: step: expected {file_step} (the file's name), got {step}")
    _check_tensors(state["model"], model.state_dict(), f"{where}: model")
    _check_optimizer(state["optimizer"], optimizer, f"{where}: optimizer")
    _check_data(state["data"], n_train, f"{where}: data")
    rng = state["rng"]
    if not isinstance(rng, dict) or not _is_rng(rng.get("torch")):
        raise StoreError(f"{where}: rng: expected {{'torch': a generator state (uint8 tensor)}},"
                         f" got {_kind(rng)}")
    if type(state["threads"]) is not int or state["threads"] < 1:
        raise StoreError(f"{where}: threads: expected a thread count >= 1, got "
                         f"{_kind(state['threads'])}")
    for part in ("last_finite", "hooks"):
        if not isinstance(state[part], dict):
            raise StoreError(f"{where}: {part}: expected a dict, got {_kind(state[part])}")


def _check_tensors(got, want: dict, where: str) -> None:
    if not isinstance(got, dict):
        raise StoreError(f"{where}: expected a dict of tensors, got {_kind(got)}")
    if got.keys() != want.keys():
        lack = sorted(want.keys() - got.keys())[:3]
        more = sorted(map(str, got.keys() - want.keys()))[:3]
        raise StoreError(f"{where}: expected the keys of the run's model, got "
                         f"{'missing ' + ', '.join(lack) if lack else ''}"
                         f"{'; ' if lack and more else ''}"
                         f"{'unknown ' + ', '.join(more) if more else ''}")
    for key, ref in want.items():
        _same_tensor(got[key], ref, f"{where}.{key}")


def _same_tensor(got, ref: torch.Tensor, where: str) -> None:
    if not isinstance(got, torch.Tensor):
        raise StoreError(f"{where}: expected a tensor, got {_kind(got)}")
    if got.shape != ref.shape or got.dtype != ref.dtype:
        raise StoreError(f"{where}: expected shape {tuple(ref.shape)} of {ref.dtype}, got "
                         f"shape {tuple(got.shape)} of {got.dtype}")


def _check_optimizer(got, optimizer: torch.optim.Optimizer, where: str) -> None:
    want = optimizer.state_dict()
    if not isinstance(got, dict) or not isinstance(got.get("state"), dict) \
            or not isinstance(got.get("param_groups"), list):
        raise StoreError(f"{where}: expected {{'state': dict, 'param_groups': list}}, got "
                         f"{_kind(got)}")
    groups = got["param_groups"]
    shape = [g.get("params") if isinstance(g, dict) else None for g in groups]
    if shape != [g["params"] for g in want["param_groups"]]:
        raise StoreError(f"{where}: param_groups: expected {len(want['param_groups'])} group(s) "
                         f"of the run's parameters, got another layout ({len(groups)} group(s))")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in got["state"].items():
        if type(index) is not int or not 0 <= index < len(params) or not isinstance(entry, dict):
            raise StoreError(f"{where}: state: expected entries for parameters 0..."
                             f"{len(params) - 1}, got {index!r}: {_kind(entry)}")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                _same_tensor(value, params[index].detach(), f"{where}: state[{index}].{name}")


def _check_data(got, n: int, where: str) -> None:
    if not isinstance(got, dict) or not _is_rng(got.get("generator")):
        raise StoreError(f"{where}: expected {{'perm', 'generator'}} with a generator state, "
                         f"got {_kind(got)}")
    perm = got.get("perm")
    if not isinstance(perm, torch.Tensor) or perm.dtype != torch.int64 or perm.shape != (n,):
        raise StoreError(f"{where}: perm: expected a permutation of the {n} training examples "
                         f"(int64), got {_kind(perm)}")
    if not torch.equal(perm.sort().values, torch.arange(n, device=perm.device)):
        raise StoreError(f"{where}: perm: expected a permutation of the {n} training examples, "
                         "got indices that repeat or skip one")


def _is_rng(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _kind(value) -> str:
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))[:6]}"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:80]
