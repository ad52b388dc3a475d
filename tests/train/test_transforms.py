"""Gradient transforms: each against an independent answer, their state, their order."""

import io

import pytest
import torch

from sgdwalk.config import OptimConfig
from sgdwalk.train.transforms import (
    AddIsotropicNoise,
    ClipByGlobalNorm,
    Scale,
    chain,
    gradient_transforms,
)

SHAPES = [(7, 3), (5,), (64, 32), (1,)]


def _grads(seed, size=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen) * size for s in SHAPES]


@pytest.mark.parametrize("seed", range(8))
def test_clip_by_global_norm_is_torch_clip_grad_norm_bit_for_bit(seed):
    params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
    grads = _grads(seed, size=0.05 * (seed + 1))  # some below the limit, some above
    for p, g in zip(params, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    ClipByGlobalNorm(1.0).apply(grads, None)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))


def test_clip_bounds_the_global_norm_and_keeps_the_direction():
    grads = _grads(0, size=10.0)
    before = torch.cat([g.flatten() for g in grads])
    ClipByGlobalNorm(0.5).apply(grads, None)
    after = torch.cat([g.flatten() for g in grads])
    assert after.norm().item() == pytest.approx(0.5, rel=1e-5)
    assert torch.nn.functional.cosine_similarity(before, after, dim=0) > 1 - 1e-6


def test_scale_multiplies_every_gradient():
    grads = _grads(1)
    want = [4.0 * g for g in grads]
    Scale(4.0).apply(grads, None)
    assert all(torch.equal(a, b) for a, b in zip(grads, want))


def _noise(std=0.3, seed=5):
    drawn = []

    def std_at(generator):  # an estimator that draws from the generator, as the real one does
        drawn.append(torch.randn(3, generator=generator))
        return std

    return AddIsotropicNoise(std_at, seed), drawn


def test_noise_adds_std_times_the_generators_normals_after_the_estimate():
    noise, drawn = _noise()
    state = noise.init([])
    assert state["std"] == 0.3 and len(drawn) == 1
    grads = _grads(2)
    before = [g.clone() for g in grads]
    state = noise.apply(grads, state)
    reference = torch.Generator().manual_seed(5)
    torch.randn(3, generator=reference)  # the estimator's draws come first
    for g, b in zip(grads, before):
        xi = torch.randn(b.shape, generator=reference)
        assert torch.equal(g, b.add(xi, alpha=0.3))
    assert noise.record(state) == {"noise_std": 0.3}


def test_noise_state_through_a_checkpoint_continues_the_same_draws():
    noise, _ = _noise()
    state = noise.init([])
    whole = [_grads(3) for _ in range(4)]
    s = state
    for grads in whole:
        s = noise.apply(grads, s)
    cut = [_grads(3) for _ in range(4)]
    s = state
    for i, grads in enumerate(cut):
        if i == 2:  # a checkpoint: saved, loaded as resume does
            buf = io.BytesIO()
            torch.save(s, buf)
            buf.seek(0)
            s = torch.load(buf, weights_only=True)
        s = noise.apply(grads, s)
    assert all(torch.equal(a, b) for ga, gb in zip(whole, cut) for a, b in zip(ga, gb))


def test_noise_of_std_zero_changes_nothing():
    noise = AddIsotropicNoise(lambda generator: 0.0, seed=1)
    state = noise.init([])
    grads = _grads(4)
    before = [g.clone() for g in grads]
    assert noise.apply(grads, state) is state
    assert all(torch.equal(a, b) for a, b in zip(grads, before))


def test_chain_applies_in_order_and_keeps_one_state_each():
    noise, _ = _noise()
    transforms = chain(Scale(10.0), ClipByGlobalNorm(1.0), noise)
    state = transforms.init([])
    assert len(state) == 3 and state[:2] == (None, None)
    grads = _grads(5)
    by_hand = [g.clone() for g in grads]
    Scale(10.0).apply(by_hand, None)
    ClipByGlobalNorm(1.0).apply(by_hand, None)
    noise.apply(by_hand, state[2])
    new = transforms.apply(grads, state)
    assert all(torch.equal(a, b) for a, b in zip(grads, by_hand))
    assert not torch.equal(new[2]["generator"], state[2]["generator"])
    assert transforms.record(new) == {"noise_std": 0.3}
    # the order matters: clip then scale gives a norm of 10, scale then clip of 1
    other = _grads(5)
    chain(ClipByGlobalNorm(1.0), Scale(10.0)).apply(other, (None, None))
    assert torch.cat([g.flatten() for g in other]).norm().item() == pytest.approx(10, rel=1e-5)


def test_gradient_transforms_follow_the_optimizer_section():
    def kinds(cfg, n_chunks=3):
        built = gradient_transforms(cfg, n_chunks, lambda generator: 0.1, seed=0)
        return [type(t) for t in built.transforms]

    assert kinds(OptimConfig()) == []  # plain SGD: the gradient as computed
    assert kinds(OptimConfig(algorithm="gd", gd_sum_chunks=True, clip_grad_norm=1.0)) == [
        Scale, ClipByGlobalNorm]
    assert kinds(OptimConfig(algorithm="gd", gd_sum_chunks=True), n_chunks=1) == []
    assert kinds(OptimConfig(algorithm="gd_noise", clip_grad_norm=2.0)) == [
        ClipByGlobalNorm, AddIsotropicNoise]
    summed = gradient_transforms(OptimConfig(algorithm="gd", gd_sum_chunks=True), 9,
                                 lambda generator: 0.0, seed=0)
    assert summed.transforms[0].factor == 9.0
