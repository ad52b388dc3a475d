"""The per-example loss contract: cross_entropy, mse and sequence_cross_entropy against
torch's own losses, and a reduced loss refused in one line that says how to fix it."""

import pytest
import torch
import torch.nn.functional as F

from sgdwalk.errors import ConfigError
from sgdwalk.losses import cross_entropy, mse, per_example, sequence_cross_entropy


def _data(n=500, classes=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = 30 * torch.randn(n, classes, generator=gen, dtype=torch.float64)  # large logits too
    y = torch.randint(0, classes, (n,), generator=gen)
    return z, y, gen


def test_cross_entropy_is_torch_cross_entropy_per_example():
    z, y, _ = _data()
    torch.testing.assert_close(cross_entropy(z, y), F.cross_entropy(z, y, reduction="none"),
                               rtol=1e-13, atol=1e-13)


def test_mse_on_real_targets_is_the_mean_over_output_dims():
    z, _, gen = _data(n=40, classes=5)
    t = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    got = mse(z, t)
    assert got.shape == (40,)
    torch.testing.assert_close(got, F.mse_loss(z, t, reduction="none").mean(dim=1),
                               rtol=1e-13, atol=0)
    assert float(got.mean()) == pytest.approx(float(F.mse_loss(z, t)), rel=1e-13)
    # one output per example: targets (N,) for outputs (N, 1)
    out = z[:, :1]
    torch.testing.assert_close(mse(out, t[:, 0]), (out[:, 0] - t[:, 0]) ** 2, rtol=1e-13, atol=0)


def test_mse_on_class_labels_uses_one_hot_targets():
    z, y, _ = _data(n=40, classes=5)
    one_hot = F.one_hot(y, 5).double()
    torch.testing.assert_close(mse(z, y), F.mse_loss(z, one_hot, reduction="none").mean(dim=1),
                               rtol=1e-13, atol=0)


def test_reduced_or_misshapen_losses_are_one_line_errors():
    z, y, gen = _data(n=12, classes=3)
    t = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    for reduced in (F.mse_loss, F.cross_entropy):
        target = t if reduced is F.mse_loss else y
        with pytest.raises(ConfigError, match=r"expected per-example losses of shape \(12,\), "
                                              r"got shape \(\)") as err:
            per_example(reduced, z, target)
        assert "reduction='none'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"got shape \(12, 1\)"):
        per_example(lambda out, y: mse(out, y).unsqueeze(1), z, t)
    with pytest.raises(ConfigError, match=r"^mse: expected targets with the output's \(12, 3\) "):
        mse(z, t[:, :2])
    torch.testing.assert_close(per_example(mse, z, t), mse(z, t), rtol=0, atol=0)


def test_sequence_cross_entropy_is_the_mean_token_loss_of_each_sequence():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 7, (3, 5), generator=gen)
    got = sequence_cross_entropy(logits, targets)
    by_hand = torch.stack([
        torch.stack([torch.logsumexp(logits[n, t], 0) - logits[n, t, targets[n, t]]
                     for t in range(5)]).mean()
        for n in range(3)
    ])
    assert got.shape == (3,)
    torch.testing.assert_close(got, by_hand, rtol=1e-14, atol=0)
    torch.testing.assert_close(
        got, torch.stack([F.cross_entropy(logits[n], targets[n]) for n in range(3)]),
        rtol=1e-14, atol=0,
    )
    torch.testing.assert_close(got.mean(), F.cross_entropy(logits.reshape(15, 7),
                                                           targets.reshape(15)))
    with pytest.raises(ConfigError, match=r"expected logits \(N, T, V\) and targets \(N, T\), "
                                         r"got \(3, 5, 7\) and \(3, 4\)"):
        sequence_cross_entropy(logits, targets[:, :4])
