"""A run from its RunConfig: data, model, optimizer, walk and store around the training loop.

    from sgdwalk.experiment import resume, train
    result = train(load_config("default"), "runs")   # trains runs/<name>-<id>/
    resume(result.run_dir)                           # continues a stopped or killed run

This is where the probes and training meet: the walk is built from `cfg.walk` and handed to
the loop (`sgdwalk.train.Trainer`) as its step hooks; the loop never imports the probes,
and nothing the walk is set to reaches the trajectory.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from sgdwalk import losses
from sgdwalk.batch_sizes import check_batchnorm_batches
from sgdwalk.config import RunConfig, config_from_toml
from sgdwalk.data import load_dataset
from sgdwalk.errors import ConfigError, SgdwalkWarning
from sgdwalk.functional.flat import params_of
from sgdwalk.functional.lanczos import lanczos
from sgdwalk.hessian import Hessian
from sgdwalk.models import build_model
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk
from sgdwalk.store.identity import FollowerStore, create_run, finish_meta, open_run, run_dir_name
from sgdwalk.train.batches import Batches
from sgdwalk.train.cadence import Cadence
from sgdwalk.train.distributed import Parallel
from sgdwalk.train.evaluate import evaluate_splits
from sgdwalk.train.loop import Trainer
from sgdwalk.train.noise import isotropic_noise_std
from sgdwalk.train.optim import make_optimizer
from sgdwalk.train.schedule import make_schedule
from sgdwalk.train.transforms import gradient_transforms


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: str  # completed | diverged | stopped
    steps: int  # updates done
    final: dict  # the last epoch evaluation (train/val/test loss and accuracy)
    already_done: bool = False  # the run was finished before this call: returned untouched


def train(config: RunConfig, out: str | Path = "runs", *, progress: bool | None = None,
          halt_at_step: int | None = None, meta: dict | None = None) -> RunResult:
    """Train a new run under `out/<name>-<id>` (or continue it if it exists unfinished).

    meta: extra fields merged into the run's meta.json before training (a sweep records
    its study and variant there); a finished run is returned untouched.
    """
    trainer = build_trainer(config)  # data and model first: a bad config writes nothing
    if trainer.par.is_main:
        store = create_run(config, out)
        with _abandon_on_error(store):
            if meta and store.meta().get("status") not in _FINISHED:
                store.update_meta(**meta)
        trainer.par.barrier()
    else:  # torchrun: rank 0 creates the run, the others follow it
        trainer.par.barrier()
        store = FollowerStore(Path(out) / run_dir_name(config))
    return run_trainer(trainer, store, progress=progress, halt_at_step=halt_at_step)


def resume(run_dir: str | Path, *, progress: bool | None = None,
           halt_at_step: int | None = None) -> RunResult:
    """Continue a stopped or killed run from its newest checkpoint."""
    par = Parallel.from_env(torch.device("cpu"))
    store = open_run(run_dir) if par.is_main else FollowerStore(run_dir)
    with _abandon_on_error(store):
        if par.is_main:
            store.check_config()  # an edited config.toml is refused, naming its keys
        trainer = build_trainer(config_from_toml(store.config_text()))
    return run_trainer(trainer, store, progress=progress, halt_at_step=halt_at_step)


def fork(run_dir: str | Path, *, progress: bool | None = None,
         halt_at_step: int | None = None) -> RunResult:
    """Continue a run under its edited config.toml as a new run: the edited config gets its
    own run id and folder beside the parent (`<name>-<id>`), starts from the parent's newest
    checkpoint (parameters, optimizer state, data order; the optimizer's hyper-parameters
    from the edited config) and records `parent = {run_id, run_dir, step}` in its meta.json;
    the parent's config.toml is restored to the config it started with. Its rows begin at
    the fork's step (the earlier ones are the parent's). An interrupted fork continues with
    `resume(new run)`. Shapes (model, walk) cannot change in a fork."""
    parent = open_run(run_dir)
    with _abandon_on_error(parent):
        edited, (step, state) = parent.take_edit()
        parent_id = parent.meta()["run_id"]
        parent.close()
    config = config_from_toml(edited)
    trainer = build_trainer(config)
    child = create_run(config, Path(run_dir).parent)
    with _abandon_on_error(child):
        if child.latest_checkpoint() is None:  # a new fork: seeded with the parent's state
            child.update_meta(parent={"run_id": parent_id, "run_dir": str(run_dir),
                                      "step": step}, torch_threads=torch.get_num_threads())
            child.save_checkpoint(step, state, keep=config.train.keep_checkpoints)
    return run_trainer(trainer, child, progress=progress, halt_at_step=halt_at_step)


_FINISHED = ("completed", "diverged")


def run_trainer(trainer: Trainer, store, *, progress: bool | None = None,
                halt_at_step: int | None = None) -> RunResult:
    """Train into `store` (an open, writable run) unless the run is finished; close it.

    halt_at_step (tests): stop before that update and drop the rows not yet committed, as
    a kill would.
    """
    with _abandon_on_error(store):
        if store.meta().get("status") in _FINISHED:
            store.close()
            return _result_of(store.path)
        trainer.hooks.sink = store.log  # the walk writes its values into the run's rows
        outcome = trainer.run(store, progress, halt_at_step)
        if outcome.status == "halted":
            store.discard()
            store.close()
            return RunResult(store.path, "stopped", outcome.steps, outcome.final)
        final = outcome.final
        if outcome.status == "completed":  # the last evaluation, made by this call or before
            final = store.meta().get("final", final)
        finish_meta(store, outcome.status, outcome.steps, final)
        store.close()
        return RunResult(store.path, outcome.status, outcome.steps, final)


@contextlib.contextmanager
def _abandon_on_error(store):
    """On any failure (a full disk, Ctrl-C twice, a bug) drop the rows not yet committed,
    as a kill would, and free the writer lock now: the run resumes from its checkpoint, even
    in this process (a sweep's next attempt), not only once the process has ended."""
    try:
        yield store
    except BaseException:
        store.abandon()
        raise


def _result_of(run_dir: Path) -> RunResult:
    from sgdwalk.store import RunStore

    with RunStore.open(run_dir) as store:
        meta = store.meta()
    return RunResult(run_dir, meta.get("status", "unknown"), meta.get("steps_done", 0),
                     meta.get("final", {}), already_done=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: expected cpu or an available GPU, got {name!r} (no CUDA)")
    return torch.device(name)


def build_trainer(cfg: RunConfig) -> Trainer:
    """The Trainer of run `cfg`, its walk as hooks; nothing is written (that needs a store)."""
    device = resolve_device(cfg.train.device)
    par = Parallel.from_env(device)  # one process unless under torchrun
    data = load_dataset(cfg.data)
    x, y = data.train.x.to(device), data.train.y.to(device)
    batches = Batches(x, y, cfg.optim, data.augment if cfg.data.augment else None,
                      cfg.train.seed, par.world)
    steps_per_epoch = batches.steps_per_epoch
    total_steps = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    per_example, loss_fn, loss_sum = _losses(cfg.train.loss)
    step_size = {}
    if cfg.optim.lr_over_lambda0 is not None:  # lr relative to the curvature at init
        lambda0 = sharpness_at_init(model, per_example, x, y, cfg.optim.gd_chunk)
        if not (lambda0 > 0 and math.isfinite(lambda0)):
            raise ConfigError("optim.lr_over_lambda0: expected a top Hessian eigenvalue > 0 "
                              f"at init, got {lambda0}")
        cfg = replace(cfg, optim=replace(cfg.optim, lr=cfg.optim.lr_over_lambda0 / lambda0))
        step_size = {"lambda0": lambda0, "lr": cfg.optim.lr}
    optimizer = make_optimizer(cfg.optim, model.parameters())
    schedule = make_schedule(cfg.optim, total_steps)  # its peak: the lr just set
    walk = _build_walk(cfg, model, data, device, steps_per_epoch, per_example)
    _warn_unreached(walk.probes, total_steps, steps_per_epoch)
    n_chunks = math.ceil(len(y) / cfg.optim.gd_chunk) if batches.full_batch else 1
    transforms = gradient_transforms(cfg.optim, n_chunks,
                                     partial(isotropic_noise_std, cfg.optim, model, loss_fn, x, y),
                                     seed=cfg.train.seed + 1, device=device)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    if not cfg.train.eval_train:
        splits.pop("train")
    facts = {"layers": list(walk.layout.layers), "parameters": walk.layout.numel,
             "data_source": data.source,
             "sizes": {k: len(getattr(data, k)) for k in ("train", "val", "test", "probe")},
             **step_size}
    cadence = Cadence.of(cfg.train, steps_per_epoch, total_steps, batches.full_batch)
    return Trainer(model, optimizer, batches, cadence, transforms=transforms, hooks=walk,
                   evaluate=partial(evaluate_splits, model, splits, device, loss_sum=loss_sum),
                   loss_fn=loss_fn, lr_at=None if schedule.is_constant else partial(
                       _scheduled_lr, cfg.optim.lr, schedule),
                   par=par, keep_checkpoints=cfg.train.keep_checkpoints, name=cfg.name,
                   progress=cfg.train.progress, facts=facts)


def _warn_unreached(probes, total_steps: int, steps_per_epoch: int) -> None:
    """Warn when a probe's named steps (steps:S, epochs:E) lie past the run's last step:
    a study window the run never reaches (train.epochs x steps per epoch, or
    train.max_steps, ends it first) is measured nowhere."""
    from sgdwalk.probes.schedule import listed_beyond

    for probe in probes:
        late, listed = listed_beyond(probe.schedule, total_steps)
        if late:
            warnings.warn(SgdwalkWarning(
                f"walk.{probe.name}: {len(late)} of its {listed} named steps ({late[0]}"
                f"{'' if len(late) == 1 else f'-{late[-1]}'}) lie past the run's last step "
                f"{total_steps - 1} ({steps_per_epoch} steps per epoch; train.epochs and "
                f"train.max_steps end it): never measured"), stacklevel=2)


def sharpness_at_init(model: torch.nn.Module, per_example, x: torch.Tensor, y: torch.Tensor,
                      chunk: int) -> float:
    """lambda_0: the top eigenvalue of the Hessian of the mean training loss at the model's
    parameters, by Lanczos (tol 1e-4, at most 100 matvecs) over `chunk`-sized pieces of
    (x, y). A copy of the model is evaluated, so BatchNorm's running statistics and the
    global generator are untouched (the trajectory is that of the same run with the lr set
    by hand)."""
    probe = copy.deepcopy(model)
    theta = torch.cat([p.detach().reshape(-1) for p in params_of(probe)])
    data = [(x[i:i + chunk], y[i:i + chunk]) for i in range(0, len(y), chunk)]
    hessian = Hessian.of_module(probe, per_example, theta, data)
    res = lanczos(lambda v: hessian @ v, dim=theta.numel(), k=1, tol=1e-4, max_iter=100,
                  generator=torch.Generator().manual_seed(0), dtype=theta.dtype,
                  device=theta.device)
    return float(res.eigenvalues[0])


def _scheduled_lr(peak: float, schedule, t: int) -> float:
    return peak * schedule.factor(t)


def _losses(name: str):
    """(per-example loss for the walk, batch-mean loss for training and GD + noise's std,
    chunk-sum loss for evaluation) of `train.loss`. Cross-entropy keeps torch's fused
    reductions, so its runs are bit for bit those of earlier versions."""
    if name in ("mse", "sequence_cross_entropy"):
        per_example = getattr(losses, name)
        return (per_example, lambda out, y: per_example(out, y).mean(),
                lambda out, y: per_example(out, y).sum())
    return losses.cross_entropy, F.cross_entropy, None


def _build_walk(cfg: RunConfig, model, data, device, steps_per_epoch: int,
                loss_fn) -> Walk:
    """The walk of `cfg.walk` on the fixed probe set and the head of the held-out split;
    every batch it will normalise by is checked before anything runs."""
    heldout = data.val if len(data.val) else data.test
    n_heldout = min(len(heldout), cfg.data.probe_size)
    # eps's finite-population correction: the training loss averages over the training split
    population = cfg.walk.line_population or len(data.train)
    batch = len(data.train) if cfg.optim.algorithm != "sgd" else cfg.optim.batch_size
    largest = max(len(data.probe), min(batch, len(data.train)), n_heldout)
    if population < largest:  # a set population smaller than a sample drawn from it
        raise ConfigError(f"walk.line_population: expected at least the {largest} examples a "
                          f"line is evaluated on (probe set {len(data.probe)}, batch "
                          f"{min(batch, len(data.train))}, held-out {n_heldout}), got "
                          f"{population}")
    # economy_reach = "peak" scales by the schedule's peak lr: optim.lr unless set
    lr_peak = cfg.walk.economy_lr_peak or cfg.optim.lr
    walk = Walk(model, build_probes(replace(cfg.walk, line_population=population,
                                            economy_lr_peak=lr_peak),
                                    steps_per_epoch), loss_fn=loss_fn,
                probe_set=(data.probe.x.to(device), data.probe.y.to(device)),
                heldout=(heldout.x[:n_heldout].to(device), heldout.y[:n_heldout].to(device)),
                probe_batch=cfg.data.probe_batch, bn_policy=cfg.walk.bn_policy,
                probe_autocast=cfg.walk.probe_autocast,
                steps_per_epoch=steps_per_epoch, seed=cfg.train.seed + 2)
    check_batchnorm_batches(cfg, model, len(data.train), len(data.probe), n_heldout,
                            bool(walk.probes))
    return walk
