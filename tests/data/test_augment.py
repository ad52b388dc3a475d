"""augment_cifar: a vectorised random crop (zero padding) + horizontal flip, checked against
a per-image loop that uses the same draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sgdwalk.data import augment_cifar


def reference(x, seed, padding=4, fill=0.0):
    """Per-image crop and flip from the documented draws: i (B,), j (B,), then flip (B,)."""
    g = torch.Generator().manual_seed(seed)
    b, _, h, w = x.shape
    i = torch.randint(0, 2 * padding + 1, (b,), generator=g)
    j = torch.randint(0, 2 * padding + 1, (b,), generator=g)
    flip = torch.rand(b, generator=g) < 0.5
    out = []
    for k in range(b):
        padded = F.pad(x[k], (padding,) * 4, value=fill)
        crop = padded[:, i[k] : i[k] + h, j[k] : j[k] + w]
        out.append(crop.flip(-1) if flip[k] else crop)
    return torch.stack(out), i, j, flip


def batch(b=16, c=3, h=32, w=32, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_matches_the_per_image_reference():
    x = batch(64)
    out = augment_cifar(x, torch.Generator().manual_seed(7))
    ref, _, _, _ = reference(x, 7)
    assert torch.equal(out, ref)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    padding=st.integers(0, 5),
    seed=st.integers(0, 1000),
)
def test_matches_the_reference_for_any_shape(b, c, h, w, padding, seed):
    x = batch(b, c, h, w, seed)
    out = augment_cifar(x, torch.Generator().manual_seed(seed), padding=padding, fill=-1.5)
    assert torch.equal(out, reference(x, seed, padding, fill=-1.5)[0])


def test_deterministic_given_the_generator_and_keeps_shape_dtype_and_input():
    x = batch(32)
    before = x.clone()
    a = augment_cifar(x, torch.Generator().manual_seed(3))
    b = augment_cifar(x, torch.Generator().manual_seed(3))
    c = augment_cifar(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(x, before)


def test_uses_only_its_generator_and_advances_it():
    x = batch(8)
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = augment_cifar(x, g)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not consumed
    torch.manual_seed(456)
    assert torch.equal(first, augment_cifar(x, torch.Generator().manual_seed(5)))
    second = augment_cifar(x, g)  # the next mini-batch gets fresh draws
    assert not torch.equal(first, second)


def test_pads_with_zeros_by_offset():
    x = torch.ones(256, 3, 32, 32)
    out = augment_cifar(x, torch.Generator().manual_seed(0))
    _, i, j, _ = reference(x, 0)
    for k in range(256):
        zero_rows = (out[k] == 0).all(dim=(0, 2))  # (H,) rows made of padding
        zero_cols = (out[k] == 0).all(dim=(0, 1))
        # the crop starts i rows into the padded image: max(0, 4 - i) zero rows on top,
        # max(0, i - 4) at the bottom; columns likewise (flipping only mirrors them)
        assert int(zero_rows.sum()) == abs(int(i[k]) - 4)
        assert int(zero_cols.sum()) == abs(int(j[k]) - 4)
        assert set(out[k].unique().tolist()) <= {0.0, 1.0}
    assert (i == 0).any() and (i == 8).any()  # the extreme offsets occur in 256 draws


def test_a_flip_really_flips():
    x = batch(200)
    out = augment_cifar(x, torch.Generator().manual_seed(1), padding=0)  # crop = identity
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped ^ kept).all())  # each image is either itself or its mirror image
    assert 70 < int(flipped.sum()) < 130  # p = 0.5: 100 +- 3.5 sigma
    _, _, _, flip = reference(x, 1, padding=0)
    assert torch.equal(flipped, flip)


def test_rejects_a_batch_without_channels():
    with pytest.raises(
        ValueError, match="expected x of shape \\(B, C, H, W\\), got \\(4, 32, 32\\)"
    ):
        augment_cifar(torch.zeros(4, 32, 32), torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_result_on_cuda_with_a_cpu_generator():
    x = batch(32)
    cpu = augment_cifar(x, torch.Generator().manual_seed(9))
    cuda = augment_cifar(x.cuda(), torch.Generator().manual_seed(9))
    assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)


def test_per_channel_fill_pads_black_in_normalised_units():
    """With fill = -mean/std the padding is pixel value 0, as torchvision pads before
    normalising; the image content is unchanged where it is kept."""
    from sgdwalk.data.cifar import BLACK

    x = torch.randn(64, 3, 32, 32)
    out = augment_cifar(x, torch.Generator().manual_seed(3), fill=BLACK)
    border = out[:, :, 0, :]  # top rows: padding wherever the crop offset was > 0
    for c in range(3):
        values = border[:, c].flatten()
        assert torch.isclose(values, torch.tensor(BLACK[c]), atol=1e-6).any()
    assert out.shape == x.shape
