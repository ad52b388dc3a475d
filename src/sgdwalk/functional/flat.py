"""Flat parameter vectors: one contiguous 1-D tensor for all of a model's parameters.

Probes work on flat vectors (theta_t, theta_{t+1}, u_t, g_t) so that a cosine or a norm is
one kernel call, and per-layer values are segment reductions over known bounds. A
`ParamLayout` records where each parameter lives in the flat vector and turns a flat
vector back into a dict of shaped *views* for `torch.func.functional_call`, without
copying.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ParamLayout:
    """Positions of named parameters inside a flat vector.

    names[i] has shape shapes[i] and occupies flat[bounds[i][0]:bounds[i][1]]. `layers`
    groups consecutive parameters of one module (weight and bias) under the module name.
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    bounds: tuple[tuple[int, int], ...]
    layers: tuple[str, ...]
    layer_bounds: tuple[tuple[int, int], ...]

    @property
    def numel(self) -> int:
        return self.bounds[-1][1] if self.bounds else 0

    @classmethod
    def from_named(cls, named: Iterable[tuple[str, torch.Tensor]]) -> ParamLayout:
        names, shapes, bounds = [], [], []
        layers: list[str] = []
        layer_bounds: list[tuple[int, int]] = []
        start = 0
        for name, tensor in named:
            stop = start + tensor.numel()
            names.append(name)
            shapes.append(tensor.shape)
            bounds.append((start, stop))
            module = name.rpartition(".")[0] or name
            if layers and layers[-1] == module:
                layer_bounds[-1] = (layer_bounds[-1][0], stop)
            else:
                layers.append(module)
                layer_bounds.append((start, stop))
            start = stop
        return cls(tuple(names), tuple(shapes), tuple(bounds), tuple(layers), tuple(layer_bounds))

    @classmethod
    def of(cls, model: torch.nn.Module) -> ParamLayout:
        """Layout of a model's trainable parameters, in `named_parameters()` order."""
        return cls.from_named((n, p) for n, p in model.named_parameters() if p.requires_grad)

    def empty(self, like: torch.Tensor) -> torch.Tensor:
        """An uninitialised flat buffer with the dtype and device of `like`."""
        return torch.empty(self.numel, dtype=like.dtype, device=like.device)

    def views_list(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Shaped views into `flat`, one per parameter, sharing its storage."""
        return [flat[a:b].view(shape) for (a, b), shape in zip(self.bounds, self.shapes)]

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """{parameter name: shaped view into `flat`} for `functional_call`."""
        return dict(zip(self.names, self.views_list(flat)))


def params_of(model: torch.nn.Module) -> list[torch.Tensor]:
    """The trainable parameters in layout order."""
    return [p for p in model.parameters() if p.requires_grad]
