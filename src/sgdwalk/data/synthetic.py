"""A generated Gaussian-mixture classification task of any input shape.

With K = `synthetic_classes`, D = prod(`synthetic_shape`) and sigma = `synthetic_noise`:
class means mu_k are independent random directions in R^D scaled to unit length, labels are
balanced (n // K or n // K + 1 per class) in random order, and x_i = mu_{y_i} + sigma * e_i
with e_i ~ N(0, I_D), reshaped to `synthetic_shape`. Two classes' means are about sqrt(2)
apart, so sigma = 0.5 gives a learnable task that is not linearly trivial.

Everything is drawn from a private generator with the fixed seed GENERATOR_SEED, so the task
is the same in every run and never touches the global RNG. Split in generation order: the
first 70% train, then `data.val_size` (default 15%) validation, the last 15% test. No
standardisation (inputs already have mean about 0 and std about sigma) and no augmentation.
"""

from __future__ import annotations

import math

import torch

from sgdwalk.config import DataConfig
from sgdwalk.data.prepare import assemble_dataset
from sgdwalk.data.registry import register_dataset
from sgdwalk.data.types import Dataset, Split
from sgdwalk.errors import ConfigError

GENERATOR_SEED = 0  # the task never depends on the run seed
TEST_FRACTION = 0.15
VAL_FRACTION = 0.15  # when data.val_size is None


def gaussian_mixture(
    n: int, shape: tuple[int, ...], classes: int, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """n examples of the mixture described in the module docstring.

    Returns:
        x: float32 (n, *shape); y: int64 (n,) in [0, classes).
    """
    generator = torch.Generator().manual_seed(seed)
    dim = math.prod(shape)
    means = torch.randn(classes, dim, generator=generator, dtype=torch.float64)
    means /= means.norm(dim=1, keepdim=True)
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=generator)]
    eps = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    x = means[y] + noise * eps
    return x.to(torch.float32).reshape(n, *shape), y


@register_dataset("synthetic")
def load_synthetic(cfg: DataConfig) -> Dataset:
    """The synthetic task sized by `data.synthetic_*` (see the module docstring)."""
    n = cfg.synthetic_n
    n_test = round(n * TEST_FRACTION)
    n_val = round(n * VAL_FRACTION) if cfg.val_size is None else cfg.val_size
    n_train = n - n_test - n_val
    if n_train < 1:
        raise ConfigError(
            f"data.synthetic_n: expected room for train after {n_test} test and {n_val} "
            f"validation examples, got {n}"
        )
    x, y = gaussian_mixture(
        n, tuple(cfg.synthetic_shape), cfg.synthetic_classes, cfg.synthetic_noise, GENERATOR_SEED
    )
    train = Split(x[:n_train], y[:n_train])
    val = Split(x[n_train : n_train + n_val], y[n_train : n_train + n_val])
    test = Split(x[n_train + n_val :], y[n_train + n_val :])
    return assemble_dataset(
        cfg, train, val, test, num_classes=cfg.synthetic_classes, augment=None, source="generated"
    )
