"""How the walk reads a batch: one adapter, chosen once from `Walk`'s arguments.

The probes see data only as chunks, pairs (inputs, targets) with `len(targets)` examples,
and reach the model only through the adapter's `forward` and `losses`; so no probe looks at
what a batch is. Three kinds of batch, after the three ways trainers get a loss:

    Walk(model, loss_fn=fn)                      (x, y) tuples or lists: output = model(x),
                                                 losses = fn(output, y)  (a plain loop)
    Walk(model, loss_fn=fn, labels="labels")     dicts: y = batch["labels"], output =
                                                 model(**the other keys), losses =
                                                 fn(output, y)  (Hugging Face's
                                                 `compute_loss_func` with labels popped)
    Walk(model, per_example_loss=f)              anything: losses = f(model, batch)
                                                 (Lightning's `training_step`);
                                                 `model_loss` reads model(**batch).loss

Either way the losses are per-example, of shape (N,) for the batch's N examples (the
contract of `sgdwalk.losses`). A model that returns only the batch's mean `.loss` (Hugging
Face's default) is refused in one line: it cannot give eps its per-example differences.

A chunk of an (x, y) batch is (x, y) itself, bit for bit what the trainers use. A chunk of
any other batch is (e, e) with e an `Examples` view of it: its forward is the per-example
losses, and `losses` hands them through, so the Hessian and the sweeps need nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from sgdwalk.errors import ConfigError
from sgdwalk.losses import ROW_WISE, Loss, expect_per_example, per_example

Chunk = tuple[Any, Any]  # (inputs, targets), len(targets) examples


class BatchFormat(Protocol):
    """What the evaluator and the walk need to know about a batch."""

    row_wise: bool  # losses of many forwards' outputs may be taken at once, concatenated
    tensor_inputs: bool  # inputs are tensors (a memory format applies to them)

    def chunks(self, batch) -> list[Chunk]:
        """A batch, or a list of batches (micro-batches of one step), as chunks."""

    def forward(self, model: torch.nn.Module, inputs):
        """The model's output on a chunk's inputs (the call the trainer makes)."""

    def losses(self, output, targets) -> torch.Tensor:
        """Per-example losses (N,) of a chunk from its forward's output."""

    def take(self, chunks: list[Chunk], start: int, stop: int) -> Chunk:
        """Examples [start, stop) of the chunks, in order, as one chunk."""


class Examples:
    """A dict, tuple or list batch whose tensors share a first dimension N, the examples.

    `len` is N; `e[i:j]` slices every tensor (other values are kept); `Examples.cat` joins.
    """

    def __init__(self, data):
        if not isinstance(data, (Mapping, tuple, list)):
            raise ConfigError(f"batch: expected a dict, tuple or list of tensors, got "
                              f"{type(data).__name__}")
        self.data = data
        sizes = {len(v) for v in self._values() if isinstance(v, torch.Tensor) and v.dim()}
        if len(sizes) != 1:
            got = "no tensor with a batch dimension" if not sizes else f"sizes {sorted(sizes)}"
            raise ConfigError(f"batch: expected tensors of one first dimension (the "
                              f"examples), got {got}")
        self.n = sizes.pop()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: slice) -> Examples:
        return Examples(self._map(lambda v: v[index]))

    @staticmethod
    def cat(parts: list[Examples]) -> Examples:
        first = parts[0]
        if len(parts) == 1:
            return first
        if isinstance(first.data, Mapping):
            return Examples({k: _cat([p.data[k] for p in parts]) for k in first.data})
        return Examples(type(first.data)(_cat(list(vs)) for vs in zip(*(p.data for p in parts))))

    def _values(self):
        return self.data.values() if isinstance(self.data, Mapping) else self.data

    def _map(self, fn):
        def one(v):
            return fn(v) if isinstance(v, torch.Tensor) and v.dim() else v

        if isinstance(self.data, Mapping):
            return {k: one(v) for k, v in self.data.items()}
        return type(self.data)(one(v) for v in self.data)


def _cat(values: list):
    return torch.cat(values) if isinstance(values[0], torch.Tensor) and values[0].dim() else (
        values[0])


class Pairs:
    """(x, y) batches: output = model(x), losses = loss_fn(output, y)."""

    tensor_inputs = True

    def __init__(self, loss_fn: Loss):
        self.loss_fn = loss_fn
        self.row_wise = loss_fn in ROW_WISE

    def chunks(self, batch) -> list[Chunk]:
        if _is_pair(batch):
            return [tuple(batch)]
        if isinstance(batch, (tuple, list)) and all(_is_pair(c) for c in batch):
            return [tuple(c) for c in batch]
        raise ConfigError(f"batch: expected (x, y) tensors or a list of (x, y) chunks, got "
                          f"{_describe(batch)} (dict batches: Walk(..., labels='labels') or "
                          f"per_example_loss=)")

    def forward(self, model, inputs):
        return model(inputs)

    def losses(self, output, targets) -> torch.Tensor:
        return per_example(self.loss_fn, output, targets)

    def take(self, chunks, start, stop) -> Chunk:
        x = chunks[0][0] if len(chunks) == 1 else torch.cat([c[0] for c in chunks])
        y = chunks[0][1] if len(chunks) == 1 else torch.cat([c[1] for c in chunks])
        return x[start:stop], y[start:stop]


class ExampleLosses:
    """Any other batch: losses = per_example_loss(model, batch), checked to be (N,)."""

    row_wise = False
    tensor_inputs = False

    def __init__(self, per_example_loss: Callable, what: str = "per_example_loss"):
        self.fn = per_example_loss
        self.what = what

    def chunks(self, batch) -> list[Chunk]:
        parts = batch if _is_list_of_batches(batch) else [batch]
        return [(e, e) for e in (b if isinstance(b, Examples) else Examples(b) for b in parts)]

    def forward(self, model, inputs: Examples) -> torch.Tensor:
        n = len(inputs)
        return expect_per_example(
            self.fn(model, inputs.data), n, self.what,
            f"give Walk(..., per_example_loss=fn) with fn(model, batch) -> ({n},) losses, or "
            "a loss with reduction='none'")

    def losses(self, output, targets) -> torch.Tensor:
        return output

    def take(self, chunks, start, stop) -> Chunk:
        e = Examples.cat([c[0] for c in chunks])[start:stop]
        return e, e


def model_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    """The loss the model computes itself, Hugging Face style: `model(**batch).loss` (or
    `["loss"]`, or the first item of a tuple output). It must be per-example, shape (N,)."""
    out = model(**batch)
    if isinstance(out, tuple):
        return out[0]
    loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    if loss is None:
        raise ConfigError(f"model(**batch): expected an output with a loss, got "
                          f"{type(out).__name__} without one (are the labels in the batch?)")
    return loss


def batch_format(loss_fn: Loss | None, labels: str | None,
                 per_example_loss: Callable | None) -> BatchFormat:
    """The adapter of `Walk(loss_fn=, labels=, per_example_loss=)`; see the module docstring."""
    if per_example_loss is not None:
        if labels is not None:
            raise ConfigError(f"Walk: expected labels= or per_example_loss=, got both "
                              f"(labels={labels!r})")
        what = "model(**batch).loss" if per_example_loss is model_loss else "per_example_loss"
        return ExampleLosses(per_example_loss, what)
    if loss_fn is None:
        raise ConfigError("Walk: expected a loss_fn(output, target) or a "
                          "per_example_loss(model, batch), got neither")
    if labels is None:
        return Pairs(loss_fn)

    def labelled(model, batch):
        if not isinstance(batch, Mapping) or labels not in batch:
            raise ConfigError(f"batch: expected a dict with key {labels!r} (Walk labels="
                              f"{labels!r}), got {_describe(batch)}")
        return loss_fn(model(**{k: v for k, v in batch.items() if k != labels}), batch[labels])

    return ExampleLosses(labelled, "loss_fn")


def _is_pair(batch) -> bool:
    return (isinstance(batch, (tuple, list)) and len(batch) == 2
            and all(isinstance(t, torch.Tensor) for t in batch))


def _is_list_of_batches(batch) -> bool:
    """A list of batches (dicts, tuples; none at all): the micro-batches of one step; a
    list of tensors is one batch."""
    return isinstance(batch, list) and all(
        isinstance(b, (Mapping, Examples, tuple, list)) for b in batch)


def _describe(batch) -> str:
    if isinstance(batch, Mapping):
        return f"a dict with keys {sorted(batch)}"
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of {len(batch)} items"
    return type(batch).__name__
