"""Typed, frozen run configuration, its TOML presets and `key=value` overrides.

A run is fully described by one `RunConfig`. The resolved config is saved with every run
(`config.toml`) and is the record of truth. Every field has a commented default; fields
whose default is `None` mean "let the code decide" and are omitted from saved TOML (TOML
has no null), so saving and loading round-trips exactly.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from sgdwalk.errors import ConfigError
from sgdwalk.probes.registry import PRESETS, registered


@dataclass(frozen=True)
class DataConfig:
    # registry name (digits | fashion_mnist | mnist | cifar10 | synthetic | text | arrays) or
    # an import path package.module:factory to a function (DataConfig) -> sgdwalk.data.Dataset
    name: str = "digits"
    root: str | None = None  # folder with the dataset's files; None: the dataset's default place
    download: bool = False  # fetch missing files (checksummed) instead of failing
    url: str | None = None  # base address to download from; None: the dataset's official one
    train_size: int | None = None  # keep only the first n training examples; None: all
    val_size: int | None = None  # held out of the training file; None: dataset default
    test_size: int | None = None  # arrays without x_test: held out of train; None: a tenth
    augment: bool = True  # dataset's own: CIFAR-10 crop 32 pad 4 + flip; digits crop 8 pad 1;
    #   Fashion-MNIST crop 28 pad 3 + flip; MNIST none
    probe_size: int = 512  # examples in the fixed probe set (seeded subset of train, no aug)
    probe_batch: int = 256  # probe chunk size: the fixed BatchNorm batch while probing
    probe_seed: int = 0  # seed of the probe subset; separate from train.seed so runs share it
    synthetic_n: int = 2048  # synthetic: number of examples (train + val + test)
    synthetic_shape: tuple[int, ...] = (32,)  # synthetic: input shape, e.g. (3, 32, 32)
    synthetic_classes: int = 4  # synthetic: number of classes
    synthetic_noise: float = 0.5  # synthetic: std of the Gaussian noise around class means
    path: str | None = None  # arrays: the .npz file; text: a UTF-8 file; None: (text only)
    #   Debian's fortunes (data.root or /usr/share/games/fortunes)
    text_block: int = 64  # text: characters per example, in x and in y (<= model.block_size)

    def __post_init__(self):
        _check_sizes(self)  # first: a giant value is refused before anything uses it
        _check_positive(self, "probe_size", "probe_batch", "synthetic_n", "synthetic_classes")
        _check_positive_or_none(self, "train_size")
        for name in ("val_size", "test_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"data.{name}: expected an integer >= 0, got {value}")
        if not self.synthetic_shape or any(s <= 0 for s in self.synthetic_shape):
            raise ConfigError(
                f"data.synthetic_shape: expected positive sizes, got {list(self.synthetic_shape)}"
            )
        values = math.prod(self.synthetic_shape) * self.synthetic_n
        if values > MAX_SYNTHETIC_VALUES:
            raise ConfigError(f"data.synthetic_shape: expected at most {MAX_SYNTHETIC_VALUES:,} "
                              f"values over the data.synthetic_n = {self.synthetic_n} examples "
                              f"(generated in memory, 4 bytes each), got {values:,}")
        if self.synthetic_noise < 0:
            raise ConfigError(f"data.synthetic_noise: expected >= 0, got {self.synthetic_noise}")
        _check_float32(self, "synthetic_noise")
        _check_int_range(self, "text_block", 1, MAX_BLOCK_SIZE)
        if self.path is not None and not self.path.strip():
            raise ConfigError(f"data.path: expected a file path, got {self.path!r}")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mlp"  # registry name: mlp | vgg11 | resnet | gpt
    widths: tuple[int, ...] = (128, 64)  # mlp: hidden layer widths (study MNIST: 500, 350)
    batchnorm: bool = True  # mlp and vgg11: BatchNorm after each hidden layer / conv
    width_mult: float = 1.0  # vgg11 and resnet: channel multiplier for CPU-sized runs
    depth: int = 20  # resnet: 6n+2 (20 or 56)
    activation: str = "relu"  # mlp: relu | tanh | gelu (tanh: the edge-of-stability MLPs)
    init: str = "study"  # study: He fan-out normal convs, zero bias, BN 1/0; gpt: nanoGPT's
    #   N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer)) | torch: defaults
    n_layer: int = 4  # gpt: transformer blocks
    n_head: int = 4  # gpt: attention heads per block; must divide n_embd
    n_embd: int = 128  # gpt: width of the residual stream (and of the token embedding)
    block_size: int = 64  # gpt: longest sequence, i.e. number of learned positions
    dropout: float = 0.0  # gpt: on embeddings, attention weights and residual branches

    def __post_init__(self):
        _check_sizes(self)  # first: a giant value is refused before anything uses it
        if any(w <= 0 for w in self.widths):
            raise ConfigError(f"model.widths: expected positive widths, got {list(self.widths)}")
        if not self.width_mult > 0:
            raise ConfigError(f"model.width_mult: expected > 0, got {self.width_mult}")
        _check_float32(self, "width_mult")
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ConfigError(f"model.depth: expected 6n+2 >= 8 (20, 56), got {self.depth}")
        _check_choice(self, "init", ("study", "torch"))
        _check_choice(self, "activation", ("relu", "tanh", "gelu"))
        # bounds well past the largest published models: a typo fails here, not as an
        # out-of-memory error deep inside torch
        _check_int_range(self, "n_layer", 1, 1024)
        _check_int_range(self, "n_head", 1, 1024)
        _check_int_range(self, "n_embd", 1, 65536)
        _check_int_range(self, "block_size", 1, MAX_BLOCK_SIZE)
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"model.n_embd: expected a multiple of model.n_head ({self.n_head}), "
                f"got {self.n_embd}"
            )
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout: expected a number in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class OptimConfig:
    algorithm: str = "sgd"  # sgd: mini-batches | gd: full batch | gd_noise: full batch + noise
    optimizer: str = "SGD"  # torch.optim class that applies the update (SGD, Adam, ...)
    lr: float = 0.1  # step size on the *mean* loss (study VGG-11: 0.1)
    batch_size: int = 100  # sgd: mini-batch size (study: 100)
    momentum: float = 0.0  # SGD momentum (study: 0)
    weight_decay: float = 0.0  # L2 weight decay through the optimizer (study: 1e-4)
    # which parameters it decays: all | matrices (nanoGPT's two groups: tensors of 2 or more
    # dimensions, i.e. weight matrices, convolution kernels and embeddings; biases and
    # LayerNorm/BatchNorm parameters get none)
    weight_decay_on: str = "all"
    kwargs: dict[str, Any] = field(default_factory=dict)  # more optimizer arguments
    gd_chunk: int = 5000  # gd: examples per accumulated chunk (memory only, not maths)
    gd_sum_chunks: bool = False  # gd: the original's sum over chunks: a step n_chunks x lr
    noise: str = "matched"  # gd_noise: matched (SGD's total variance) | original (0.02 x max)
    noise_batch: int = 100  # gd_noise matched: the SGD batch size whose noise is matched
    noise_scale: float = 0.02  # gd_noise original: std = scale x max per-coordinate variance
    noise_samples: int = 16  # mini-batches whose training-loss gradients at theta_0 set the std
    clip_grad_norm: float | None = None  # clip the gradient's global norm; None: no clipping
    # lr = this / lambda_0, lambda_0 the top Hessian eigenvalue of the training loss at
    # theta_0 (Lanczos on the whole training split before the first step; lr and lambda_0
    # recorded in meta.json); optim.lr is then not used. None: optim.lr is the step size
    lr_over_lambda0: float | None = None
    # lr schedule, an exact function of the step (train/schedule.py): constant | step |
    # cosine | wsd (warmup, stable, decay); the lr above is its peak
    schedule: str = "constant"
    warmup_steps: int = 0  # linear warmup to the peak over these first updates
    warmup_fraction: float = 0.0  # or over this fraction of the run's updates (not both)
    lr_end_fraction: float = 0.0  # cosine and wsd: the lr they reach at the end, / peak
    step_milestones: tuple[float, ...] = (0.5, 0.75)  # step: fractions of the run's updates
    step_gamma: float = 0.1  # step: the lr is multiplied by this at each milestone
    decay_fraction: float = 0.2  # wsd: the last fraction of the run's updates decays
    decay_shape: str = "linear"  # wsd: linear | cosine | sqrt (1 - sqrt of the progress)

    def __post_init__(self):
        _check_sizes(self)  # first: a giant value is refused before anything uses it
        _check_choice(self, "algorithm", ("sgd", "gd", "gd_noise"))
        _check_choice(self, "schedule", ("constant", "step", "cosine", "wsd"))
        _check_choice(self, "decay_shape", ("linear", "cosine", "sqrt"))
        _check_choice(self, "weight_decay_on", ("all", "matrices"))
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps: expected an integer >= 0, "
                              f"got {self.warmup_steps}")
        for name in ("warmup_fraction", "lr_end_fraction", "decay_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"optim.{name}: expected a number in [0, 1], "
                                  f"got {getattr(self, name)}")
        if self.warmup_steps and self.warmup_fraction:
            raise ConfigError(f"optim.warmup_fraction: expected 0 when optim.warmup_steps is "
                              f"set ({self.warmup_steps}), got {self.warmup_fraction}")
        if any(not 0 < m < 1 for m in self.step_milestones):
            raise ConfigError(f"optim.step_milestones: expected fractions in (0, 1), "
                              f"got {list(self.step_milestones)}")
        if not 0 < self.step_gamma <= 1:
            raise ConfigError(f"optim.step_gamma: expected a number in (0, 1], "
                              f"got {self.step_gamma}")
        _check_choice(self, "noise", ("matched", "original"))
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"optim.lr: expected a finite number > 0, got {self.lr}")
        _check_positive(self, "batch_size", "gd_chunk", "noise_batch", "noise_samples")
        for name in ("momentum", "weight_decay", "noise_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(f"optim.{name}: expected >= 0, got {getattr(self, name)}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ConfigError(f"optim.clip_grad_norm: expected > 0, got {self.clip_grad_norm}")
        if self.lr_over_lambda0 is not None and not self.lr_over_lambda0 > 0:
            raise ConfigError(
                f"optim.lr_over_lambda0: expected a number > 0, got {self.lr_over_lambda0}")
        # they become float32 tensor scalars: a larger value is a traceback inside torch
        _check_float32(self, "lr", "momentum", "weight_decay", "noise_scale", "clip_grad_norm",
                       "lr_over_lambda0")
        _check_optim_kwargs(self)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # passes over the training split (study: 200)
    max_steps: int | None = None  # stop after this many updates if sooner; None: epochs decide
    seed: int = 1111  # seeds init, data order, augmentation and noise (study: 1111)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (cuda when available)
    # steps between checkpoints; 0: at each epoch end, or every 50 steps in full-batch runs
    # (an epoch of GD is one step, and a checkpoint costs about one GD step)
    checkpoint_every: int = 0
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    # epochs between train/val/test evaluations; full-batch runs: steps, at least 10 apart
    # (an evaluation costs about one GD step) unless eval_every_steps says otherwise
    eval_every: int = 1
    eval_every_steps: int | None = None  # steps between evaluations; None: eval_every decides
    eval_train: bool = True  # also evaluate the whole training split (eval mode, no aug)
    # the training loss, also the walk's: cross_entropy | mse (squared error to the one-hot
    # targets, mean over classes: the setting of the edge-of-stability literature) |
    # sequence_cross_entropy (language models: per sequence, the mean next-token loss)
    loss: str = "cross_entropy"
    flush_every: int = 50  # steps between commits of buffered metric rows
    progress: bool = True  # progress bar on stderr

    def __post_init__(self):
        _check_sizes(self)  # first: a giant value is refused before anything uses it
        _check_positive(self, "epochs", "keep_checkpoints", "eval_every", "flush_every")
        _check_positive_or_none(self, "max_steps", "eval_every_steps")
        _check_choice(self, "loss", ("cross_entropy", "mse", "sequence_cross_entropy"))
        if self.checkpoint_every < 0:
            raise ConfigError(
                f"train.checkpoint_every: expected >= 0, got {self.checkpoint_every}"
            )
        if not (self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            raise ConfigError(
                f"train.device: expected cpu, cuda, cuda:N or auto, got {self.device!r}"
            )


def _walk_config() -> type:
    """WalkConfig, generated from the probe registry (`sgdwalk.probes.registry`).

    Its keys are `preset`, `bn_policy` and `probe_autocast`, one schedule key per registered
    probe (walk.line, ...; None: the preset decides), then every probe's settings
    (walk.line_min, ...), each
    with the default (and the comment) of its probe file's settings dataclass. A probe
    validates its own settings; the schedule strings are checked here.
    """
    specs = registered()
    doc = {"doc": "the cheapest preset that runs the probes: " + " | ".join(PRESETS)}
    keys = [("preset", str, field(default="cheap", metadata=doc))]
    keys += [(s.name, str | None, field(default=None, metadata={"doc": s.summary}))
             for s in specs]
    doc = {"doc": "BatchNorm while probing: batch | recalibrate | eval (docs/bn_policy.md)"}
    keys.append(("bn_policy", str, field(default="batch", metadata=doc)))
    doc = {"doc": "the probes' no-grad forwards: off | bf16 (bfloat16 autocast; its error: "
                  "docs/metrics.md)"}
    keys.append(("probe_autocast", str, field(default="off", metadata=doc)))
    for spec in specs:
        if spec.settings is not None:
            hints = typing.get_type_hints(spec.settings)
            keys += [(f.name, hints[f.name], field(default=f.default, metadata=f.metadata))
                     for f in dataclasses.fields(spec.settings)]
    names = [k[0] for k in keys]
    if len(set(names)) < len(names):  # a bug in a probe file, not user input
        raise ValueError(f"WalkConfig: two probes claim the same key among {names}")

    def __post_init__(self):
        _check_sizes(self)  # first: a giant value is refused before anything uses it
        from sgdwalk.probes.schedule import parse_schedule  # validates the strings

        _check_choice(self, "preset", PRESETS)
        _check_choice(self, "bn_policy", ("batch", "recalibrate", "eval"))
        _check_choice(self, "probe_autocast", ("off", "bf16"))
        for spec in specs:
            if spec.settings is not None:
                spec.settings(**settings_of(self, spec))
            if getattr(self, spec.name) is not None:
                parse_schedule(getattr(self, spec.name), steps_per_epoch=1,
                               where=f"walk.{spec.name}")

    namespace = {"__module__": __name__, "__doc__": _WALK_DOC, "__post_init__": __post_init__}
    return dataclasses.make_dataclass("WalkConfig", keys, frozen=True, namespace=namespace)


_WALK_DOC = """Which probes run and when, and their settings (keys: `_walk_config`).

A schedule is a string: "off", "every:N", "epochs:1,10" (every step of those 1-based
epochs), "log:N" (N log-spaced steps per decade) or a union joined with "+", e.g.
"every:50+epochs:1,10". None: the preset decides."""


def settings_of(walk, spec) -> dict[str, Any]:
    """The values of `spec`'s settings keys in a WalkConfig `walk` (those it has: a probe
    registered after WalkConfig was made keeps its own defaults)."""
    return {f.name: getattr(walk, f.name) for f in dataclasses.fields(spec.settings)
            if hasattr(walk, f.name)}


WalkConfig = _walk_config()


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"  # a label for people; the run id derives from the whole config
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)

    def __post_init__(self):
        if len(self.name) > MAX_NAME:
            raise ConfigError(f"name: expected at most {MAX_NAME} characters (it names the run's "
                              f"folder, and a file name has at most 255 bytes), got "
                              f"{len(self.name)}")
        if self.optim.kwargs.get("capturable") and self.train.device == "cpu":
            raise ConfigError("optim.kwargs.capturable: expected false or unset on train.device "
                              "cpu (torch steps capturable optimizers on accelerators only), "
                              "got true")
        # the probe reads Adam's second moments: refused here, before a run folder is made,
        # rather than at its first scheduled step
        adam = self.optim.optimizer in ("Adam", "AdamW")
        if self.walk.precond_sharpness not in (None, "off") and not adam:
            raise ConfigError(f"walk.precond_sharpness: expected \"off\" unless "
                              f"optim.optimizer is Adam or AdamW (it reads their diagonal "
                              f"preconditioner), got {self.walk.precond_sharpness!r} with "
                              f"{self.optim.optimizer}")


# ---------------------------------------------------------------------------------------
# validation helpers


def _check_positive(obj, *names):
    section = _SECTION.get(type(obj).__name__, "")
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ConfigError(f"{section}{name}: expected an integer > 0, got {value}")


FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32
INT_LIMIT = 2**62  # larger integers overflow torch's int64 (seed + 2, sizes, products)


def _check_float32(obj, *names):
    """Each named float (None skipped) is finite and fits in float32, as tensors need."""
    section = _SECTION.get(type(obj).__name__, "")
    for name in names:
        value = getattr(obj, name)
        if value is not None and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
            raise ConfigError(f"{section}{name}: expected a finite number within float32 "
                              f"range (|x| <= 3.4e38), got {value}")


MAX_BLOCK_SIZE = 1 << 20  # longest sequence a config may ask for (a million tokens)
MAX_NAME = 200  # run name: the folder is NAME-<12 hex>, made under .NAME.tmp-PID first
MAX_ITEMS = 1024  # items in one list-valued setting (widths, gaps, ...)
MAX_SYNTHETIC_VALUES = 1 << 28  # synthetic data: examples x values per example (1 GiB)

# Upper bounds of the size-like settings, each with what it allocates or multiplies, so a
# typo such as 2**62 is one line here rather than an allocation (or a hang) in a run.
SIZE_LIMITS: dict[str, tuple[int, str]] = {
    "data.probe_size": (1 << 24, "examples the probes hold and pass over"),
    "data.probe_batch": (1 << 20, "examples in one probe forward"),
    "data.train_size": (1 << 30, "training examples kept"),
    "data.val_size": (1 << 30, "examples held out"),
    "data.test_size": (1 << 30, "examples held out"),
    "data.synthetic_n": (1 << 24, "examples generated in memory"),
    "data.synthetic_shape": (1 << 16, "size of one axis of every generated example"),
    "data.synthetic_classes": (1 << 16, "class means generated in memory"),
    "model.widths": (1 << 16, "units of one hidden layer; its weights grow with the square"),
    "model.depth": (1202, "the deepest ResNet of the ResNet paper (6n+2 layers)"),
    "model.n_layer": (1024, "transformer blocks in memory"),
    "model.n_head": (1024, "attention heads per block"),
    "model.n_embd": (1 << 16, "width of the residual stream; weights grow with the square"),
    "optim.batch_size": (1 << 20, "examples in one forward"),
    "optim.gd_chunk": (1 << 20, "examples in one forward"),
    "optim.noise_batch": (1 << 20, "examples per gradient that sets the noise"),
    "optim.noise_samples": (1 << 16, "gradients computed at theta_0"),
    "train.keep_checkpoints": (1000, "checkpoint files kept on disk"),
    "train.flush_every": (1 << 20, "steps of metric rows buffered in memory"),
    "walk.barrier_ks": (100, "the probe keeps the floors and iterates of the last max(k) "
                        "steps, each a copy of every parameter"),
    "walk.barrier_points": (1001, "passes over the probe set per segment"),
    "walk.line_points": (1001, "passes over the probe set per step"),
    "walk.noise_microbatches": (1 << 16, "backward passes per step"),
    "walk.sharpness_k": (1000, "eigenvectors of every parameter held in memory"),
    "walk.sharpness_max_iter": (1000, "Lanczos vectors of every parameter held in memory"),
}


def _check_sizes(obj):
    """Every size-like setting of `obj` (SIZE_LIMITS) within its limit; lists item by item
    and at most MAX_ITEMS long."""
    section = _SECTION.get(type(obj).__name__, "")
    for key, (limit, why) in SIZE_LIMITS.items():
        where, _, name = key.rpartition(".")
        if f"{where}." != section or not hasattr(obj, name) or getattr(obj, name) is None:
            continue
        value = getattr(obj, name)
        items = value if isinstance(value, (tuple, list)) else (value,)
        if len(items) > MAX_ITEMS:
            raise ConfigError(f"{key}: expected at most {MAX_ITEMS} items, got {len(items)}")
        for item in items:
            if item > limit:
                raise ConfigError(f"{key}: expected at most {limit:,} ({why}), got {item}")


# optimizer arguments that no run here can use, and why (checked against torch 2.13 on CPU:
# differentiable steps fail on the trainer's leaf parameters; foreach and fused together
# are refused by the constructor; each alone works)
_REFUSED_KWARGS = {
    "differentiable": "the trainer steps outside autograd; torch refuses in-place updates "
                      "of leaf parameters in differentiable mode",
}


def _check_optim_kwargs(cfg) -> None:
    """optim.kwargs: no validated field (the run would be labelled with one value and train
    with another), finite numbers only, no argument the trainer cannot step with."""
    fields = {f.name for f in dataclasses.fields(cfg)} - {"kwargs"}
    for key, value in cfg.kwargs.items():
        if key in fields:
            raise ConfigError(f"optim.kwargs.{key}: expected optim.{key} instead (a validated "
                              f"setting the run is labelled with), got kwargs.{key} = {value!r}")
        if not _finite(value):
            raise ConfigError(f"optim.kwargs.{key}: expected finite numbers, got {value!r}")
        if key in _REFUSED_KWARGS and value:
            raise ConfigError(f"optim.kwargs.{key}: expected false or unset "
                              f"({_REFUSED_KWARGS[key]}), got {str(value).lower()}")
    if cfg.kwargs.get("foreach") and cfg.kwargs.get("fused"):
        raise ConfigError("optim.kwargs.fused: expected false or unset with foreach = true "
                          "(torch takes one of the two), got true")


def _finite(value) -> bool:
    """No NaN or infinity in a number or (nested) list of them."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _check_int_range(obj, name, low, high):
    value = getattr(obj, name)
    if not low <= value <= high:
        section = _SECTION.get(type(obj).__name__, "")
        raise ConfigError(f"{section}{name}: expected an integer in [{low}, {high}], got {value}")


def _check_positive_or_none(obj, *names):
    for name in names:
        if getattr(obj, name) is not None:
            _check_positive(obj, name)


def _check_choice(obj, name, choices):
    value = getattr(obj, name)
    if value not in choices:
        section = _SECTION.get(type(obj).__name__, "")
        raise ConfigError(f"{section}{name}: expected one of {', '.join(choices)}, got {value!r}")


_SECTION = {
    "DataConfig": "data.",
    "ModelConfig": "model.",
    "OptimConfig": "optim.",
    "TrainConfig": "train.",
    "WalkConfig": "walk.",
}


# ---------------------------------------------------------------------------------------
# dict <-> config


def dotted(table: dict, prefix: str = "") -> dict:
    """Nested tables as dotted keys ({"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}); an empty
    table stays a value (e.g. optim.kwargs = {})."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_dict(config) -> dict:
    """The config as nested plain dicts, omitting None values (TOML has no null)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif value is None:
            continue
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        elif isinstance(value, dict):
            out[f.name] = dict(value)
        else:
            out[f.name] = value
    return out


def from_dict(cls, data: dict, where: str = ""):
    """Build config class `cls` from nested dicts, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a table, got "
                          f"{_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}{key}"
        if key not in names:
            raise ConfigError(
                f"{path}: expected one of the keys {', '.join(sorted(names))}, got unknown key"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, where=f"{path}.")
        else:
            kwargs[key] = coerce(value, hint, path)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def coerce(value, hint, path: str):
    """Check `value` against the type `hint`, converting only where lossless."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], path)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > INT_LIMIT:
                raise ConfigError(f"{path}: expected an integer between -2**62 and 2**62, "
                                  f"got {_describe(value)}")
            return value
        raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
    if origin is tuple:
        if isinstance(value, str):  # "64,32" from the command line
            value = [_scalar(v) for v in value.split(",")]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        return tuple(coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {_describe(value)}")
        return dict(value)
    raise ConfigError(f"{path}: unsupported type {hint}")  # pragma: no cover


def _describe(value) -> str:
    kind = type(value).__name__
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"


# ---------------------------------------------------------------------------------------
# presets, files and overrides


def _shipped():
    """The package's configs folder. importlib.resources is imported here, not at the top:
    it is a fifth of what `import sgdwalk.config` costs, and most imports never need it."""
    from importlib import resources

    return resources.files("sgdwalk") / "configs"


def preset_names() -> list[str]:
    """Names of the presets shipped inside the package."""
    folder = _shipped()
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_summary(name: str) -> str:
    """The description line of a shipped preset (its second comment line)."""
    text = (_shipped() / f"{name}.toml").read_text()
    comments = [line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")]
    return comments[1] if len(comments) > 1 else ""


def read_toml(source: str) -> dict:
    """The dict of a preset name or a TOML file path."""
    path = Path(source)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"config: expected a TOML file or a preset name, got {source!r}")
        text = read_text_file(path, "config")
    else:
        resource = _shipped() / f"{source}.toml"
        if not resource.is_file():
            raise ConfigError(
                f"config: expected a preset ({', '.join(preset_names())}) or a .toml file, "
                f"got {source!r}"
            )
        text = resource.read_text()
    return parse_toml(text, f"config {source}")


MAX_TOML_DEPTH = 32  # tables and arrays nested in each other in a config or study file


def parse_toml(text: str, where: str) -> dict:
    """tomllib.loads with one-line ConfigErrors (prefixed `where`): text that is not TOML,
    and nesting deeper than MAX_TOML_DEPTH (which would otherwise exhaust the recursion of
    the parser or of everything that walks the result)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: expected valid TOML, got {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: expected TOML nested at most {MAX_TOML_DEPTH} deep, got "
                          f"deeper nesting than the parser can follow") from None
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_TOML_DEPTH:
            raise ConfigError(f"{where}: expected TOML nested at most {MAX_TOML_DEPTH} deep, "
                              f"got more than {MAX_TOML_DEPTH} levels")
        children = node.values() if isinstance(node, dict) else node
        stack += [(c, depth + 1) for c in children if isinstance(c, (dict, list))]
    return data


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of a user's file; unreadable or undecodable is a one-line ConfigError."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: expected a readable file, got "
                          f"{exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1]
        raise ConfigError(f"{what} {path}: expected UTF-8 TOML text, got byte {byte!r} at "
                          f"offset {exc.start}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split "section.key=value" into a key path and a TOML-parsed value.

    Values parse as TOML (numbers, true/false, [lists], "strings"); anything that is not
    valid TOML is taken as a bare string, so `data.name=cifar10` works unquoted, and a
    bare "64,32" becomes a list where the field is one (`model.widths=64,32`).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override: expected key=value such as optim.lr=0.05, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        value = None  # TOML has no null: parsed again below for its one-line error
    if value is None or isinstance(value, (list, dict)):
        value = parse_toml(f"v = {raw}", f"override {key}")["v"]  # nesting depth checked
    return key.split("."), value


def _scalar(text: str):
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of nested dict `data` with each "a.b=value" applied."""
    out = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"{'.'.join(path)}: expected a key inside a table, got a value at {part!r}"
                )
            node = child
        node[path[-1]] = value
    return out


def _deep_copy(data):
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def load_config(source: str | None = None, overrides: list[str] = ()) -> RunConfig:
    """Resolve a preset name or TOML file plus overrides into a validated RunConfig."""
    data = read_toml(source) if source is not None else {}
    return from_dict(RunConfig, apply_overrides(data, list(overrides)))


def config_to_toml(config: RunConfig) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(config))


def config_from_toml(text: str) -> RunConfig:
    return from_dict(RunConfig, parse_toml(text, "config"))


def replace(config, **changes):
    """`dataclasses.replace` that also accepts dotted keys: replace(cfg, **{"optim.lr": 0.1})."""
    nested: dict[str, dict] = {}
    flat = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(config, head), **sub)
    return dataclasses.replace(config, **flat)
