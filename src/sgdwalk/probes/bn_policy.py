"""BatchNorm (and dropout) while probing: the three policies of docs/bn_policy.md.

- "batch" (default): BN layers normalise with the statistics of each fixed batch (train
  mode) and, while probing, do not track running statistics, so the model's are untouched.
  Every point sees the same batch compositions, so differences along the line are exact.
- "recalibrate": at each point, fresh running statistics are accumulated over the source's
  batches (in scratch copies of the BN buffers), then the source is evaluated in eval mode
  (about twice the cost).
- "eval": eval mode with the model's current running statistics. Cheap, but the statistics
  belong to theta_t, not to the moved point; not the default for that reason.
Other modules (dropout) are always in eval mode while probing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from sgdwalk.errors import ConfigError

BN_POLICIES = ("batch", "recalibrate", "eval")


class BNPolicy:
    """The modes of a model's modules while it is probed, under one BN policy.

    Args:
        model: the trained module; only its `training` (and BN `track_running_stats` and
            `momentum`) flags are toggled while probing, and restored.
        policy: "batch" | "recalibrate" | "eval".
    """

    def __init__(self, model: torch.nn.Module, policy: str = "batch"):
        if policy not in BN_POLICIES:
            raise ConfigError(f"bn_policy: expected one of {BN_POLICIES}, got {policy!r}")
        self.policy = policy
        self._modules = list(model.modules())
        self._bns = [m for m in self._modules if isinstance(m, _BatchNorm)]
        self._bn_set = set(self._bns)
        self._dropouts = [m for m in self._modules if isinstance(m, _DropoutNd)]
        self.recalibrates = policy == "recalibrate" and bool(self._bns)
        # Scratch copies of the BN buffers, where "recalibrate" accumulates fresh statistics.
        self.buffers = {
            f"{name}.{b}" if name else b: buf.detach().clone()
            for name, m in model.named_modules()
            if isinstance(m, _BatchNorm)
            for b, buf in m.named_buffers(recurse=False)
        }
        self._pure = (policy != "eval" or not self._bns) and all(
            isinstance(m, _BatchNorm) for m in self._modules for _ in m.buffers(recurse=False)
        )

    @property
    def points_are_pure(self) -> bool:
        """Whether probing losses depend on the parameters and the data only.

        Not under the "eval" BN policy (the model's running statistics move with training),
        nor for a model with buffers outside BN layers (they might too): then the losses at
        one point, measured at two steps, may differ, and must not be reused.
        """
        return self._pure

    @property
    def has_dropout(self) -> bool:
        """Whether a dropout layer drops anything in train mode (p > 0: a layer with p = 0
        returns its input, so the training forward is the probing one; read at each use,
        as p may be changed during training)."""
        return any(m.p > 0 for m in self._dropouts)

    @property
    def reproduces_training_forward(self) -> bool:
        """Whether a probing forward computes what the training forward computed.

        True without dropout and with BN absent or under the "batch" policy: then f(0) on
        the step's batch is the training loss (up to round-off of the mean, and of the
        kernels when a conv net is probed in channels_last: see `memory_format`).
        """
        return not self.has_dropout and (not self._bns or self.policy == "batch")

    @property
    def bn_training(self) -> bool:
        """Whether every BN layer is in train mode now (as a model's are while it trains,
        unless its BN is frozen)."""
        return all(m.training for m in self._bns)

    def recalibrate(self, forwards: list[Callable[[], object]]) -> None:
        """Reset the BN buffers in use and average fresh statistics over the forwards of a
        source's chunks (each a call without arguments: `LossEvaluator.inputs`; momentum
        None: the cumulative mean over the chunks); then BN is left in eval mode.

        Call it inside a reparametrised scope whose BN buffers are scratch copies: it writes
        the buffers the model sees.
        """
        for m in self._bns:
            if m.running_mean is not None:
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.num_batches_tracked.zero_()
        momenta = [m.momentum for m in self._bns]
        try:
            for m in self._bns:
                m.momentum = None
                m.training = True
            with torch.no_grad():
                for forward in forwards:
                    forward()
        finally:
            for m, momentum in zip(self._bns, momenta):
                m.momentum = momentum
                m.training = False

    @contextlib.contextmanager
    def probing(self):
        """Dropout and friends off; BN in train mode only under the "batch" policy.

        Under "batch", BN layers also stop tracking running statistics for the duration:
        they normalise with batch statistics and write nothing (which also keeps forward-
        and reverse-mode transforms free of in-place buffer updates).
        """
        flags = [m.training for m in self._modules]
        tracking = [m.track_running_stats for m in self._bns]
        batch = self.policy == "batch"
        # object.__setattr__: plain attributes, and Module.__setattr__ costs ~3 us a call
        # (dozens per sweep on a small network)
        try:
            for m, flag in zip(self._modules, flags):
                want = batch and m in self._bn_set
                if flag != want:  # set only what changes
                    object.__setattr__(m, "training", want)
            if batch:
                for m in self._bns:
                    object.__setattr__(m, "track_running_stats", False)
            yield
        finally:
            for m, flag in zip(self._modules, flags):
                if m.training != flag:
                    object.__setattr__(m, "training", flag)
            for m, track in zip(self._bns, tracking):
                object.__setattr__(m, "track_running_stats", track)
