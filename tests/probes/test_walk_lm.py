"""A language model in the walk: per-token losses reduced per sequence, eps over sequences.

The examples of a language model's batch are its sequences: the loss contract gives one
loss per sequence (the mean of its token losses), so the line probe's noise threshold is
eps = 2 std(d) / sqrt(N) over the N per-sequence differences d_j = l_j(0) - l_j(a_min),
not over the N T token differences. Checked on a tiny float64 GPT against that formula,
with (ids, targets) tuples and with {"input_ids", "labels"} dict batches, the loss being
`sgdwalk.losses.sequence_cross_entropy`.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.func import functional_call

from sgdwalk.config import WalkConfig
from sgdwalk.functional.flat import ParamLayout, params_of
from sgdwalk.losses import sequence_cross_entropy
from sgdwalk.models.gpt import GPT
from sgdwalk.probes.walk import Walk

N, T, VOCAB = 12, 8, 11
PROBES = WalkConfig(preset="line", line_sources=("batch",), noise="every:1")


def _gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(VOCAB, block_size=T, n_layer=1, n_head=2, n_embd=8).double()


@pytest.fixture(scope="module")
def tokens():
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, VOCAB, (N, T), generator=g), torch.randint(0, VOCAB, (N, T),
                                                                       generator=g)


def _one_step(walk: Walk, model: GPT, *batch):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    walk.step(opt, *batch)
    return walk.table()


def _token_losses(model: GPT, flat: torch.Tensor, ids, targets) -> torch.Tensor:
    """(N, T) token cross-entropies at the flat parameters, by a plain forward."""
    logits = functional_call(model, ParamLayout.of(model).views(flat), (ids,))
    return torch.nn.functional.cross_entropy(logits.reshape(N * T, VOCAB),
                                             targets.reshape(N * T),
                                             reduction="none").view(N, T)


def test_eps_is_the_standard_error_over_sequences(tokens):
    ids, targets = tokens
    model = _gpt()
    start = copy.deepcopy(model)
    walk = Walk(model, PROBES, loss_fn=sequence_cross_entropy)
    table = _one_step(walk, model, ids, targets)
    theta = torch.cat([p.detach().reshape(-1) for p in params_of(start)])
    after = torch.cat([p.detach().reshape(-1) for p in params_of(model)])
    grid = table.loc[-1, "line_grid"]
    curve = np.asarray(table.loc[0, "line_batch"], dtype=float)
    a_min = float(grid[int(np.argmin(curve))])
    tok0 = _token_losses(start, theta, ids, targets)
    tok_min = _token_losses(start, theta + a_min * (after - theta), ids, targets)
    # the curve is the mean loss of the batch along the step
    assert curve[list(grid).index(0.0)] == pytest.approx(float(tok0.mean()), rel=1e-12)
    d_seq = tok0.mean(dim=1) - tok_min.mean(dim=1)  # N per-sequence differences
    eps_seq = 2 * float(d_seq.std()) / N**0.5
    assert table.loc[0, "line_batch_eps"] == pytest.approx(eps_seq, rel=1e-9)
    d_tok = (tok0 - tok_min).reshape(-1)  # what eps over tokens would have been
    eps_tok = 2 * float(d_tok.std()) / (N * T) ** 0.5
    assert abs(eps_tok / eps_seq - 1) > 0.1  # 1.42 here: the two are not the same number


def test_dict_batches_of_input_ids_and_labels_walk_like_tuples(tokens):
    ids, targets = tokens
    model = _gpt()
    want = _one_step(Walk(model, PROBES, loss_fn=sequence_cross_entropy), model, ids, targets)
    model = _gpt()
    walk = Walk(model, PROBES, per_example_loss=lambda m, b: sequence_cross_entropy(
        m(b["input_ids"]), b["labels"]))
    got = _one_step(walk, model, {"input_ids": ids, "labels": targets})
    assert got.loc[0, "noise_trace"] > 0 and np.isfinite(got.loc[0, "econ_height"])
    assert sorted(got.columns) == sorted(want.columns)
    for column in want.columns:
        for a, b in zip(got[column], want[column]):
            np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                       rtol=1e-12, atol=1e-15, err_msg=column)
