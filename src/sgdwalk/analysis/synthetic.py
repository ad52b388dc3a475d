"""Synthetic run tables with known properties, for tests, docs and trying the figures.

`run_frame` lays out given per-step arrays as one run of the runs x steps table.
`sweep_tables` builds a small sweep (lr x B grid with seeds, a GD and a GD + noise run, a
diverged run) whose numbers follow the paper's story by construction: heights grow with
lr, distance shrinks with B, sharpness falls and test accuracy rises with lr / B, the
floor has barriers the iterate path does not meet. Every claim is supported on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sgdwalk.analysis.frames import Tables

GRID = np.linspace(-0.25, 1.25, 13)  # contains 0 and 1 (spacing 0.125)
PARAMETERS = 1000  # every synthetic run's parameter count (meta.json's `parameters`)


def run_frame(run_id: str, columns: dict, *, steps_per_epoch: int, lr: float = 0.1,
              batch_size: int = 32, algorithm: str = "sgd", seed: int = 0,
              status: str = "completed", config: dict | None = None,
              epoch_columns: dict | None = None, header: dict | None = None) -> pd.DataFrame:
    """One run as rows of the runs x steps table: step -1 (epoch 0) then steps 0..n-1.

    columns: metric -> (n,) per-step values (NaN = not measured). epoch_columns: metric ->
    (epochs + 1,) values at step -1 and at the last step of each epoch (train_loss, ...);
    an `epoch` column is added at those rows. header: metric -> value at step -1 only
    (what probes record before the first step, e.g. line_population).
    """
    n = len(next(iter(columns.values())))
    table = pd.DataFrame({"step": np.arange(-1, n)})
    for name, v in columns.items():
        table[name] = np.concatenate([[np.nan], np.asarray(v, dtype=float)])
    epochs = n // steps_per_epoch
    ends = np.concatenate([[-1], np.arange(1, epochs + 1) * steps_per_epoch - 1])
    table["epoch"] = np.nan
    table.loc[table["step"].isin(ends), "epoch"] = np.arange(len(ends), dtype=float)
    for name, v in (epoch_columns or {}).items():
        table[name] = np.nan
        table.loc[table["step"].isin(ends), name] = np.asarray(v, dtype=float)[:len(ends)]
    for name, v in (header or {}).items():
        table[name] = np.where(table["step"] == -1, float(v), np.nan)
    cfg = {"optim.lr": lr, "optim.batch_size": batch_size, "optim.algorithm": algorithm,
           "train.seed": seed, "config.name": run_id, **(config or {})}
    for k, v in cfg.items():
        table[k] = [v] * len(table)
    table.insert(0, "run_id", run_id)
    table.insert(1, "run_dir", "")
    table.insert(2, "status", status)
    table["steps_per_epoch"] = steps_per_epoch
    return table


def _run(run_id, lr, b, algorithm, seed, epochs, n_train, rng, diverge_at=None):
    spe = 1 if algorithm != "sgd" else max(1, n_train // b)
    cols = _step_columns(lr, b, algorithm, epochs * spe, n_train, rng)
    ecols = _epoch_columns(lr, b, algorithm, epochs, rng)
    status = "completed"
    if diverge_at is not None:
        _diverge(cols, ecols, diverge_at, spe)
        status = "diverged"
    return run_frame(run_id, cols, steps_per_epoch=spe, lr=lr, batch_size=b,
                     algorithm=algorithm, seed=seed, status=status, epoch_columns=ecols,
                     config={"optim.noise_batch": 64, "walk.line_sources": ("probe",)},
                     header={"line_population": n_train})


def _step_columns(lr, b, algorithm, n, n_train, rng) -> dict:
    """The per-step metrics of one run of n steps (draws from rng in a fixed order)."""
    t = np.arange(n)
    bnoise = 1.0 if algorithm == "gd" else 3.0 / np.sqrt(b if algorithm == "sgd" else 64)
    if algorithm != "sgd":
        t_eff = (t + 1) * max(1, n_train // 64)  # GD: one step per epoch covers many examples
    else:
        t_eff = t + 1
    z = rng.standard_normal
    update = lr * (1 + bnoise) * (1 + 0.1 * z(n)) * (0.3 if algorithm == "gd_noise" else 1)
    dist = lr * np.sqrt(t_eff) * (1 + bnoise) * (0.5 if algorithm == "gd_noise" else 1.0)
    loss = 0.2 + 2.1 * np.exp(-3 * (t + 1) / n) + 0.05 * bnoise * z(n)
    height = 2.0 * lr * np.exp(0.3 * z(n))
    eps = 0.02 * np.exp(0.1 * z(n))
    floor_a = np.clip(0.5 + 0.1 * z(n), 0.2, 0.8)
    cos = (-0.7 if algorithm == "gd" else -0.3) + 0.25 * z(n)
    sharp_every = np.where(t % 10 == 9, 1.0, np.nan)
    sharp = 10 * (b / 32) ** 0.3 / (lr / 0.1) ** 0.5 * (1 + 0.5 * np.exp(-t / n)) \
        * (1 + 0.02 * z(n)) * sharp_every
    cols = {
        "loss": loss, "lr": np.full(n, lr), "grad_norm": update / lr,
        "update_norm": update, "cos_grad": cos, "cos_update": cos + 0.01 * z(n),
        "dist_init": dist, "path_length": np.cumsum(update),
        "dist_path_ratio": dist / np.cumsum(update),
        "line_probe_height": height, "line_probe_eps": eps,
        "line_probe_floor_a": floor_a, "line_probe_floor_loss": loss - height,
        "line_probe_alpha": 1 / floor_a - 1, "line_probe_height_end": height * 0.8,
        "line_probe_interior": (rng.random(n) < (1.0 if algorithm == "gd" else 0.85)) * 1.0,
        "line_probe_convex": (rng.random(n) < (1.0 if algorithm == "gd" else 0.95)) * 1.0,
        "line_probe_crossing": (rng.random(n) < 0.02).astype(float),
        "floor_change": 1.5 * eps * z(n),
        "sharp_lambda_max": sharp, "sharp_lr_lambda": lr * sharp,
        "align_topk": (0.2 + 0.6 * b / (b + 64) + 0.02 * z(n)) * sharp_every,
    }
    for k in (1, 2, 5):  # barriers above eps on 30% of the floor, 2% of the iterate path
        fb, ib = (eps * np.where(rng.random(n) < p, 2.0, 0.2) for p in (0.3, 0.02))
        fb[:k] = ib[:k] = np.nan
        cols[f"barrier_floor_k{k}"], cols[f"barrier_iter_k{k}"] = fb, ib
    return cols


def _epoch_columns(lr, b, algorithm, epochs, rng) -> dict:
    """The evaluations at step -1 and each epoch's end: accuracy grows with lr / B."""
    z = rng.standard_normal
    e = np.arange(epochs + 1)
    acc = 0.85 - 0.02 * np.log2(b / 32) + 0.02 * np.log2(lr / 0.05) \
        - (0.05 if algorithm == "gd_noise" else 0)
    return {"train_loss": 0.1 + 2.2 * np.exp(-3 * e / epochs),
            "train_acc": 1 - 0.9 * np.exp(-3 * e / epochs),
            "val_loss": 0.3 + 2.0 * np.exp(-3 * e / epochs),
            "val_acc": acc - 0.02 - (acc - 0.1) * np.exp(-8 * e / epochs),
            "test_loss": 0.3 + 2.0 * np.exp(-3 * e / epochs) + 0.01 * z(epochs + 1),
            "test_acc": acc - (acc - 0.1) * np.exp(-8 * e / epochs) + 0.003 * z(epochs + 1)}


def _diverge(cols: dict, ecols: dict, step: int, spe: int) -> None:
    """Make the run diverge at `step`: loss inf there, nothing measured after it."""
    for v in cols.values():
        v[step + 1:] = np.nan
    cols["loss"][step] = np.inf
    cols["diverged"] = np.where(np.arange(len(cols["loss"])) == step, 1.0, np.nan)
    for v in ecols.values():
        v[step // spe + 1:] = np.nan


def _curves(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[(frame["step"] >= 0) & frame["line_probe_height"].notna()]
    a = GRID[None, :]
    fa = rows["line_probe_floor_a"].to_numpy()[:, None]
    h = rows["line_probe_height"].to_numpy()[:, None]
    floor = rows["line_probe_floor_loss"].to_numpy()[:, None]
    curves = floor + h / fa ** 2 * (a - fa) ** 2
    out = pd.DataFrame(curves, columns=[f"v{i}" for i in range(len(GRID))])
    out.insert(0, "step", rows["step"].to_numpy())
    out.insert(0, "run_id", rows["run_id"].to_numpy())
    return out


def sweep_tables(seed: int = 0, epochs: int = 4, n_train: int = 512, seeds: int = 2,
                 lrs=(0.05, 0.1, 0.2), batch_sizes=(32, 64, 128)) -> Tables:
    """A synthetic sweep: an lr x B grid of SGD runs (`seeds` seeds each), one GD and one
    GD + noise run at lr 0.1, and one diverged SGD run (lr 3.2); with line curves
    (vectors line_probe and line_grid) for every SGD run."""
    rng = np.random.default_rng(seed)
    frames = []
    for lr in lrs:
        for b in batch_sizes:
            for s in range(seeds):
                frames.append(_run(f"sgd-lr{lr}-b{b}-s{s}", lr, b, "sgd", s, epochs, n_train,
                                   rng))
    frames.append(_run("gd-lr0.1", 0.1, n_train, "gd", 0, 20, n_train, rng))
    frames.append(_run("gdnoise-lr0.1", 0.1, n_train, "gd_noise", 0, 20, n_train, rng))
    frames.append(_run("sgd-lr3.2-b32", 3.2, 32, "sgd", 0, epochs, n_train, rng,
                       diverge_at=20))
    steps = pd.concat(frames, ignore_index=True)
    curves = pd.concat([_curves(f) for f in frames], ignore_index=True)
    grid = pd.DataFrame([GRID], columns=[f"v{i}" for i in range(len(GRID))])
    grids = pd.concat([grid.assign(run_id=r, step=-1) for r in steps["run_id"].unique()],
                      ignore_index=True)
    metas = {r: {"sgdwalk": "0.1.0", "torch": "synthetic", "python": "3", "numpy": np.__version__,
                 "git_revision": None, "status": st, "parameters": PARAMETERS}
             for r, st in steps.groupby("run_id")["status"].first().items()}
    return Tables.from_frames(steps, vectors={"line_probe": curves, "line_grid": grids},
                              metas=metas)


RUN_COLUMNS = {"run_id", "run_dir", "status", "steps_per_epoch", "epochs_done", "study",
               "variant", "scale", "step"}


def write_runs(tables: Tables, root) -> list:
    """Write the runs of `tables` as run folders under `root` (one per run, named by run
    id) through the store: config.toml from the run's lr, batch size, algorithm and seed,
    meta.json with its status and steps per epoch, every finite scalar and every vector.
    Returns the run folders. For trying `sgdwalk claims` / `sgdwalk report` without
    training."""
    from pathlib import Path

    from sgdwalk.config import config_to_toml, load_config
    from sgdwalk.store import RunStore

    root = Path(root)
    out = []
    metrics = [c for c in tables.steps.columns if "." not in c and c not in RUN_COLUMNS]
    for run_id, run in tables.runs.iterrows():
        overrides = [f"name={run_id}", f"optim.lr={run['lr']}",
                     f"optim.algorithm={run['algorithm']}", f"train.seed={int(run['seed'])}"]
        if np.isfinite(run["batch_size"]):
            overrides.append(f"optim.batch_size={int(run['batch_size'])}")
        meta = {**tables.meta(run_id), "run_id": run_id, "status": run["status"],
                "steps_per_epoch": int(run["steps_per_epoch"])}
        store = RunStore.create(root / run_id, config_to_toml(load_config(None, overrides)),
                                meta)
        rows = tables.steps[tables.steps["run_id"] == run_id]
        for step, values in zip(rows["step"], rows[metrics].to_dict("records")):
            kept = {k: v for k, v in values.items() if not np.isnan(v)}
            if kept:
                store.log(int(step), kept)
        for name in tables.loaded_vectors():
            vec = tables.vectors(name)
            mine = vec[vec["run_id"] == run_id]
            cols = [c for c in vec.columns if c.startswith("v")]
            for step, v in zip(mine["step"], mine[cols].to_numpy(dtype=float)):
                store.log(int(step), {name: v})
        store.close()
        out.append(root / run_id)
    return out
