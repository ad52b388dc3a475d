"""Changes to the gradient between `hooks.before_step` and `optimizer.step()`, composable.

In the style of optax's `chain`: a transform has `init(params) -> state` and
`apply(grads, state) -> state`, where `grads` are the parameters' `.grad` tensors, changed
in place (torch's optimizers read them there), and the state is explicit: plain numbers and
tensors that go into every checkpoint, so a resumed run transforms exactly as an
uninterrupted one. `record(state)` names values worth storing once with the run.

    transforms = chain(Scale(4.0), ClipByGlobalNorm(1.0), AddIsotropicNoise(std_at, seed))
    state = transforms.init(params)                       # at theta_0
    state = transforms.apply([p.grad for p in params], state)   # every step

They run after the hooks, so probes see the true gradient g_t and the update as applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sgdwalk.config import OptimConfig

Grads = list[torch.Tensor]


class Transform:
    """A gradient transform without state; subclasses override what they need."""

    def init(self, params: Grads) -> Any:
        return None

    def apply(self, grads: Grads, state: Any) -> Any:
        raise NotImplementedError

    def record(self, state: Any) -> dict:
        return {}


class Scale(Transform):
    """g <- factor * g."""

    def __init__(self, factor: float):
        self.factor = factor

    def apply(self, grads: Grads, state: None) -> None:
        torch._foreach_mul_(grads, self.factor)


class ClipByGlobalNorm(Transform):
    """g <- g * min(1, max_norm / (|g| + 1e-6)), |g| the 2-norm of all gradients together.

    The arithmetic of `torch.nn.utils.clip_grad_norm_`, bit for bit, on gradient tensors.
    """

    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    def apply(self, grads: Grads, state: None) -> None:
        if not grads:
            return
        device = grads[0].device
        norms = [n.to(device) for n in torch._foreach_norm(grads, 2.0)]
        total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
        coef = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.to(g.device))


class AddIsotropicNoise(Transform):
    """g <- g + sigma * xi, xi ~ N(0, I) drawn from the transform's own generator.

    sigma is estimated once, at theta_0, by `std_at(generator)` (which may draw from the
    generator it is given); the state is {"std": sigma, "generator": generator state}.
    """

    def __init__(self, std_at: Callable[[torch.Generator], float], seed: int,
                 device: torch.device | str = "cpu"):
        self.std_at, self.seed, self.device = std_at, seed, torch.device(device)

    def init(self, params: Grads) -> dict:
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        std = float(self.std_at(generator))
        return {"std": std, "generator": generator.get_state()}

    def apply(self, grads: Grads, state: dict) -> dict:
        std = state["std"]
        if std <= 0:
            return state
        generator = torch.Generator(device=self.device)
        generator.set_state(state["generator"])
        for g in grads:
            g.add_(torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype),
                   alpha=std)
        return {"std": std, "generator": generator.get_state()}

    def record(self, state: dict) -> dict:
        return {"noise_std": state["std"]}


class Chain(Transform):
    """The transforms applied in order; the state is the tuple of their states."""

    def __init__(self, *transforms: Transform):
        self.transforms = transforms

    def init(self, params: Grads) -> tuple:
        return tuple(t.init(params) for t in self.transforms)

    def apply(self, grads: Grads, state: tuple) -> tuple:
        return tuple(t.apply(grads, s) for t, s in zip(self.transforms, state, strict=True))

    def record(self, state: tuple) -> dict:
        return {k: v for t, s in zip(self.transforms, state, strict=True)
                for k, v in t.record(s).items()}


def chain(*transforms: Transform) -> Chain:
    """One transform that applies `transforms` in the order given."""
    return Chain(*transforms)


def gradient_transforms(cfg: OptimConfig, n_chunks: int,
                        noise_std_at: Callable[[torch.Generator], float], seed: int,
                        device: torch.device | str = "cpu") -> Chain:
    """The optimizer section's transforms, in order: scale, clip, noise.

    gd_sum_chunks: the original GD summed the gradients of its n_chunks equal chunks' mean
        losses, a step n_chunks times larger than lr on the mean loss.
    clip_grad_norm: clip the global norm (of the gradient as scaled).
    gd_noise: isotropic noise with the std `noise_std_at(generator)` gives at theta_0.
    """
    steps = []
    if cfg.gd_sum_chunks and n_chunks > 1:
        steps.append(Scale(float(n_chunks)))
    if cfg.clip_grad_norm is not None:
        steps.append(ClipByGlobalNorm(cfg.clip_grad_norm))
    if cfg.algorithm == "gd_noise":
        steps.append(AddIsotropicNoise(noise_std_at, seed, device))
    return chain(*steps)
