"""The training loop: the one place an optimizer steps (SGD, full-batch GD, GD + noise).

Row t of the metric store describes update t (theta_t -> theta_{t+1}): the batch loss f_t(0)
and every probe value. Epoch-end evaluations (train/val/test loss and accuracy of theta at
the end of the epoch) are logged on the row of the epoch's last update; the evaluation of
theta_0 is logged at step -1.

A run is deterministic on CPU: data order, augmentation and noise come from generators
seeded by `train.seed` whose states go into every checkpoint, so `resume` continues a
stopped run exactly and rewrites any rows logged after the checkpoint with equal values.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sgdwalk.batch_sizes import check_batchnorm_batches
from sgdwalk.config import RunConfig, config_from_toml
from sgdwalk.data import load_dataset
from sgdwalk.distributed import Parallel
from sgdwalk.errors import ConfigError
from sgdwalk.models import build_model
from sgdwalk.optim import isotropic_noise_std, make_optimizer
from sgdwalk.probes.presets import build_probes
from sgdwalk.probes.walk import Walk
from sgdwalk.runs import FollowerStore, create_run, finish_meta, open_run, run_dir_name


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
    trainer = Trainer(config)  # data and model first: a bad config writes nothing
    if trainer.par.is_main:
        store = create_run(config, out)
        with _abandon_on_error(store):
            if meta and store.meta().get("status") not in _FINISHED:
                store.update_meta(**meta)
        trainer.par.barrier()
    else:  # torchrun: rank 0 creates the run, the others follow it
        trainer.par.barrier()
        store = FollowerStore(Path(out) / run_dir_name(config))
    return _run_unless_finished(trainer, store, progress, halt_at_step)


def resume(run_dir: str | Path, *, progress: bool | None = None,
           halt_at_step: int | None = None) -> RunResult:
    """Continue a stopped or killed run from its newest checkpoint."""
    par = Parallel.from_env(torch.device("cpu"))
    store = open_run(run_dir) if par.is_main else FollowerStore(run_dir)
    with _abandon_on_error(store):
        trainer = Trainer(config_from_toml(store.config_text()))
    return _run_unless_finished(trainer, store, progress, halt_at_step)


_FINISHED = ("completed", "diverged")


def _run_unless_finished(trainer, store, progress, halt_at_step) -> RunResult:
    with _abandon_on_error(store):
        if store.meta().get("status") in _FINISHED:
            store.close()
            return _result_of(store.path)
        return trainer.attach(store).run(progress, halt_at_step)


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


class Trainer:
    """Holds one run's state; `run()` trains until the end, a divergence or a stop."""

    def __init__(self, cfg: RunConfig):
        self.cfg, self.store = cfg, None
        self.device = resolve_device(cfg.train.device)
        self.par = Parallel.from_env(self.device)  # one process unless under torchrun
        self.data = load_dataset(cfg.data)
        self.train_x, self.train_y = (t.to(self.device) for t in (self.data.train.x,
                                                                    self.data.train.y))
        n, o = len(self.train_y), cfg.optim
        self.full_batch = o.algorithm != "sgd"
        if not self.full_batch and o.batch_size > n:
            raise ConfigError(f"optim.batch_size: expected at most the {n} training examples, "
                              f"got {o.batch_size}")
        if not self.full_batch and o.batch_size % self.par.world:
            raise ConfigError(f"optim.batch_size: expected a multiple of the {self.par.world} "
                              f"processes, got {o.batch_size}")
        self.steps_per_epoch = 1 if self.full_batch else n // o.batch_size
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        if cfg.train.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.train.max_steps)

        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg.model, self.data.input_shape, self.data.num_classes)
        self.model.to(self.device)
        self.optimizer = make_optimizer(o, self.model.parameters())
        self.data_gen = torch.Generator().manual_seed(cfg.train.seed)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(cfg.train.seed + 1)
        heldout = self.data.val if len(self.data.val) else self.data.test
        self.walk = Walk(
            self.model,
            build_probes(cfg.walk, self.steps_per_epoch),
            probe_set=_to(self.data.probe, self.device),
            heldout=_to(_head(heldout, cfg.data.probe_size), self.device),
            probe_batch=cfg.data.probe_batch,
            bn_policy=cfg.walk.bn_policy,
            steps_per_epoch=self.steps_per_epoch,
            seed=cfg.train.seed + 2,
        )
        check_batchnorm_batches(cfg, self.model, n, len(self.data.probe),
                                min(len(heldout), cfg.data.probe_size), bool(self.walk.probes))
        self.step, self.pos = 0, 0
        self.perm = torch.arange(n)
        self.noise_std = 0.0
        self.stop_requested = False

    def attach(self, store) -> Trainer:
        """Send metrics and checkpoints to `store` (a writable RunStore)."""
        self.store = store
        self.walk.sink = store.log
        return self

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "data": self.data_gen.get_state(),
               "noise": self.noise_gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"step": self.step, "pos": self.pos, "perm": self.perm,
                "noise_std": self.noise_std, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "walk": self.walk.state_dict(),
                "rng": rng}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.pos = int(state["step"]), int(state["pos"])
        self.perm, self.noise_std = state["perm"], float(state["noise_std"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.walk.load_state_dict(state["walk"])
        torch.set_rng_state(state["rng"]["torch"])
        self.data_gen.set_state(state["rng"]["data"])
        self.noise_gen.set_state(state["rng"]["noise"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def checkpoint(self) -> None:
        self.store.save_checkpoint(self.step, self.state_dict(),
                                   keep=self.cfg.train.keep_checkpoints)

    # -- the loop --------------------------------------------------------------------
    def run(self, progress: bool | None = None, halt_at_step: int | None = None) -> RunResult:
        cfg = self.cfg
        found = self.store.latest_checkpoint()
        if found is not None:
            self.load_state_dict(found[1])
        else:
            self._start()
        self.par.barrier()  # every rank has loaded before rank 0 writes a new checkpoint
        self.store.update_meta(status="running", steps_per_epoch=self.steps_per_epoch,
                               total_steps=self.total_steps, processes=self.par.world,
                               layers=list(self.walk.layout.layers),
                               parameters=self.walk.layout.numel, data_source=self.data.source,
                               sizes={k: len(getattr(self.data, k))
                                      for k in ("train", "val", "test", "probe")})
        show = (cfg.train.progress if progress is None else progress) and self.par.is_main
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", disable=not show,
                   dynamic_ncols=True, desc=cfg.name)
        status, final = "completed", {}
        with _stop_on_signals(self):
            while self.step < self.total_steps:
                if halt_at_step is not None and self.step >= halt_at_step:
                    status = "halted"  # tests: behave like a kill, nothing more is written
                    break
                if self.par.any(self.stop_requested):
                    self.store.flush()
                    self.checkpoint()
                    status = "stopped"
                    break
                loss = self._one_step()
                if loss is None:
                    status = "diverged"
                    break
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", epoch=self.step // self.steps_per_epoch,
                                refresh=False)
                final = self._after_step() or final
        bar.close()
        if status == "halted":
            self.store.discard()
            self.store.close()
            return RunResult(self.store.path, "stopped", self.step, final)
        if status == "completed":
            final = self.store.meta().get("final", final)
        finish_meta(self.store, status, self.step, final)
        self.store.close()
        return RunResult(self.store.path, status, self.step, final)

    def _start(self) -> None:
        """First start: noise level, the evaluation of theta_0, the step-0 checkpoint."""
        if self.cfg.optim.algorithm == "gd_noise":
            theta = torch.cat([p.detach().flatten() for p in self.model.parameters()])
            self.noise_std = isotropic_noise_std(self.cfg.optim, self.walk.evaluator.loss_function,
                                                 theta, self.train_x, self.train_y, self.noise_gen)
            self.store.update_meta(noise_std=self.noise_std)
            self.store.log(-1, {"noise_std": self.noise_std})
        self.store.log(-1, {"epoch": 0, **self._evaluate()})
        self.checkpoint()

    def _one_step(self) -> float | None:
        """One update; returns the batch loss, or None when it is not finite."""
        o = self.cfg.optim
        chunks = self._full_batch() if self.full_batch else [self._next_batch()]
        self.optimizer.zero_grad(set_to_none=True)
        n_total = sum(len(y) for _, y in chunks)
        loss_sum = torch.zeros((), dtype=torch.float64)
        for x, y in self._my_share(chunks):
            chunk_mean = F.cross_entropy(self.model(x), y)
            # lr is the step on the mean loss over the whole (global) batch
            (chunk_mean * (len(y) * self.par.world / n_total)).backward()
            loss_sum += chunk_mean.detach().double().cpu() * len(y)
        self.par.average_gradients(self.model.parameters())
        loss = float(self.par.mean_(loss_sum)) * self.par.world / n_total
        if not math.isfinite(loss):
            self._diverged(loss)
            return None
        self.walk.before_step(loss, chunks, n_total, full_batch=self.full_batch)
        if o.gd_sum_chunks and len(chunks) > 1:
            # The original summed the gradients of its 9 equal chunks' mean losses: a step
            # n_chunks times larger. Scaled after the snapshot, so probes see the true g_t.
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.mul_(len(chunks))
        if o.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.clip_grad_norm)
        if o.algorithm == "gd_noise" and self.noise_std > 0:
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.add_(torch.randn(p.shape, generator=self.noise_gen, device=p.device,
                                            dtype=p.dtype), alpha=self.noise_std)
        self.optimizer.step()
        self.walk.after_step(self.optimizer)
        self.store.log(self.step, {"loss": loss, "lr": self.optimizer.param_groups[0]["lr"]})
        self.last_finite = {"loss": loss, "step": self.step}
        return loss

    def _after_step(self) -> dict | None:
        """Advance counters; evaluate, checkpoint and flush on their schedules."""
        t = self.cfg.train
        self.step += 1
        self.pos += 1
        final = None
        if self.pos == self.steps_per_epoch:
            self.pos = 0
            epoch = self.step // self.steps_per_epoch
            if epoch % t.eval_every == 0 or self.step == self.total_steps:
                final = {"epoch": epoch, **self._evaluate()}
                self.store.log(self.step - 1, final)
                self.store.update_meta(final=final)
            self.checkpoint()
        elif (t.checkpoint_every and self.step % t.checkpoint_every == 0
              or self.step == self.total_steps):  # max_steps mid-epoch: keep the final model
            self.checkpoint()
        elif self.step % t.flush_every == 0:
            self.store.flush()
        return final

    def _my_share(self, chunks):
        """The part of the global batch this process computes: all of it when alone; under
        torchrun its contiguous shard of a mini-batch, or every world-th GD chunk."""
        if not self.par.active:
            return chunks
        if self.full_batch:
            if len(chunks) % self.par.world:
                raise ConfigError(f"optim.gd_chunk: expected the training split to make a "
                                  f"multiple of {self.par.world} chunks, got {len(chunks)}")
            return chunks[self.par.rank :: self.par.world]
        return [(self.par.shard(x), self.par.shard(y)) for x, y in chunks]

    def _next_batch(self):
        b = self.cfg.optim.batch_size
        if self.pos == 0:
            self.perm = torch.randperm(len(self.train_y), generator=self.data_gen)
        idx = self.perm[self.pos * b:(self.pos + 1) * b].to(self.device)
        return self._augmented(self.train_x[idx]), self.train_y[idx]

    def _full_batch(self):
        c = self.cfg.optim.gd_chunk
        return [(self._augmented(x), y)
                for x, y in zip(self.train_x.split(c), self.train_y.split(c))]

    def _augmented(self, x):
        if self.data.augment is None or not self.cfg.data.augment:
            return x
        return self.data.augment(x, self.data_gen)

    def _diverged(self, loss: float) -> None:
        last = getattr(self, "last_finite", {})
        self.store.log(self.step, {"loss": loss, "diverged": 1})
        self.store.update_meta(diverged_step=self.step, last_finite=last)

    @torch.no_grad()
    def _evaluate(self) -> dict:
        """Loss and accuracy of the current parameters on each split, in eval mode."""
        if not self.par.is_main:
            return {}  # only rank 0 logs them
        was = self.model.training
        self.model.eval()
        out = {}
        splits = {"train": self.data.train, "val": self.data.val, "test": self.data.test}
        if not self.cfg.train.eval_train:
            splits.pop("train")
        for name, split in splits.items():
            if len(split) == 0:
                continue
            total, correct = 0.0, 0
            for x, y in zip(split.x.split(1000), split.y.split(1000)):
                x, y = x.to(self.device), y.to(self.device)
                logits = self.model(x)
                total += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
            out[f"{name}_loss"] = total / len(split)
            out[f"{name}_acc"] = correct / len(split)
        self.model.train(was)
        return out


def _to(split, device):
    return (split.x.to(device), split.y.to(device))


def _head(split, n):
    from sgdwalk.data import Split

    return Split(split.x[:n], split.y[:n])


class _stop_on_signals:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.saved = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.trainer.stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.trainer.stop_requested = True

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False
