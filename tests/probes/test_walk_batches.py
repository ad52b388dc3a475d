"""Dict batches and models that compute their own loss give the walk of (x, y) batches.

One small network is trained three ways on the same batches: as a plain module on (x, y)
tuples, as a Hugging Face style module (called as model(**batch), returning an object with
`.loss` and `.logits`) on dict batches, and on dict batches with an external loss_fn and
`labels=`. Every probe that reads the batch (economy, the batch line, curvature, gradient
noise from micro-batches) and the probe-set line must give the same values, to float32
round-off.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from sgdwalk import losses
from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError
from sgdwalk.probes.batch import Examples, model_loss
from sgdwalk.probes.walk import Walk

N, BATCH, LR = 64, 16, 0.1
# every probe that reads the step's batch, with gradient noise at every step
EVERY_BATCH_PROBE = WalkConfig(preset="full", line_sources=("batch", "probe"), line_points=5,
                               noise="every:1", sharpness="off", barrier="off",
                               economy_jvp=True)


def _body() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Linear(12, 3))


class HFStyle(nn.Module):
    """model(x=..., labels=..., reduction=...) -> .loss (mean, or per example) and .logits."""

    def __init__(self):
        super().__init__()
        self.body = _body()

    def forward(self, x, labels=None, reduction="mean"):
        logits = self.body(x)
        if labels is None:
            return SimpleNamespace(loss=None, logits=logits)
        per = losses.cross_entropy(logits, labels)
        return SimpleNamespace(loss=per if reduction == "none" else per.mean(), logits=logits)


def per_example_hf(model, batch):
    return model(**batch, reduction="none").loss


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(N, 6, generator=g), torch.randint(0, 3, (N,), generator=g)


def _train(walk: Walk, model: nn.Module, batches) -> object:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for batch in batches:
        if isinstance(batch, tuple):
            walk.step(opt, *batch)
        else:
            walk.step(opt, batch)
    return walk.table()


def _tuple_walk(data, probes=EVERY_BATCH_PROBE, bn_policy="batch"):
    x, y = data
    model = _body()
    walk = Walk(model, probes, loss_fn=losses.cross_entropy, probe_set=(x[:32], y[:32]),
                probe_batch=16, bn_policy=bn_policy)
    return _train(walk, model, list(zip(x.split(BATCH), y.split(BATCH))))


def _dict_batches(data):
    x, y = data
    return [{"x": xb, "labels": yb} for xb, yb in zip(x.split(BATCH), y.split(BATCH))]


def assert_same_walk(got, want, rtol=1e-5, atol=1e-7):
    """Every stored value of `want` (scalars and vectors) is in `got`, equal to round-off."""
    assert list(got.index) == list(want.index)
    assert sorted(got.columns) == sorted(want.columns)
    for column in want.columns:
        for a, b in zip(got[column], want[column]):
            np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                       rtol=rtol, atol=atol, err_msg=column)


@pytest.mark.parametrize("bn_policy", ["batch", "recalibrate"])
def test_a_model_with_its_own_per_example_loss_on_dict_batches_walks_like_tuples(data,
                                                                                 bn_policy):
    x, y = data
    model = HFStyle()
    walk = Walk(model, EVERY_BATCH_PROBE, per_example_loss=per_example_hf,
                probe_set={"x": x[:32], "labels": y[:32]}, probe_batch=16, bn_policy=bn_policy)
    got = _train(walk, model, _dict_batches(data))
    want = _tuple_walk(data, bn_policy=bn_policy)
    for name in ("econ_height", "econ_df1", "line_batch_eps", "line_probe_floor_a",
                 "curv_kappa", "noise_trace"):
        assert got.loc[0:, name].notna().all(), name
    assert_same_walk(got, want)


def test_dict_batches_with_a_loss_fn_and_labels_walk_like_tuples(data):
    x, y = data
    model = HFStyle()
    walk = Walk(model, EVERY_BATCH_PROBE, labels="labels",
                loss_fn=lambda out, target: losses.cross_entropy(out.logits, target),
                probe_set={"x": x[:32], "labels": y[:32]}, probe_batch=16)
    got = _train(walk, model, _dict_batches(data))
    assert_same_walk(got, _tuple_walk(data))


def test_tuple_batches_of_an_own_loss_model_walk_like_plain_tuples(data):
    """per_example_loss also takes (x, y) batches: Lightning's training_step(batch) style."""
    x, y = data
    model = HFStyle()
    walk = Walk(model, EVERY_BATCH_PROBE, probe_set=(x[:32], y[:32]), probe_batch=16,
                per_example_loss=lambda m, b: m(b[0], b[1], reduction="none").loss)
    got = _train(walk, model, list(zip(x.split(BATCH), y.split(BATCH))))
    assert_same_walk(got, _tuple_walk(data))


def test_gradient_noise_on_dict_batches_is_the_micro_batch_formula(data):
    """noise_trace = s^2 b / B from the micro-batch gradients g_i of the step's batch, each
    taken here by autograd on a copy of the model (BN on its micro-batch's statistics)."""
    x, y = data
    model = HFStyle()
    walk = Walk(model, WalkConfig(preset="off", noise="every:1", noise_microbatches=4),
                per_example_loss=per_example_hf)
    start = copy.deepcopy(model)
    table = _train(walk, model, _dict_batches(data)[:1])
    b, m = BATCH // 4, 4
    grads = []
    for i in range(m):
        ref = copy.deepcopy(start)
        ref.train()
        loss = ref(x[i * b : (i + 1) * b], y[i * b : (i + 1) * b]).loss
        params = [p for p in ref.parameters() if p.requires_grad]
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    g = torch.stack(grads).double()
    s2 = ((g - g.mean(0)) ** 2).sum() / (m - 1)
    assert table.loc[0, "noise_trace"] == pytest.approx(float(s2 * b / BATCH), rel=1e-5)


def test_a_reduced_model_loss_is_a_one_line_error_that_says_how(data):
    x, y = data
    model = HFStyle()
    walk = Walk(model, "economy", per_example_loss=model_loss)  # .loss is the mean here
    with pytest.raises(ConfigError) as err:
        walk.step(torch.optim.SGD(model.parameters(), lr=LR), {"x": x[:16], "labels": y[:16]})
    message = str(err.value)
    assert "\n" not in message
    assert "model(**batch).loss: expected per-example losses of shape (16,), got shape ()" in (
        message)
    assert "per_example_loss=fn" in message and "reduction='none'" in message


def test_model_loss_reads_a_per_example_loss_from_dict_and_tuple_outputs(data):
    x, y = data

    class DictOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _body()

        def forward(self, x, labels):
            return {"loss": losses.cross_entropy(self.body(x), labels)}

    class TupleOut(DictOut):
        def forward(self, x, labels):
            return (super().forward(x, labels)["loss"], None)

    batch = {"x": x[:8], "labels": y[:8]}
    want = losses.cross_entropy(_body()(x[:8]), y[:8])
    for model in (DictOut(), TupleOut()):
        torch.testing.assert_close(model_loss(model, batch), want, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="expected an output with a loss"):
        model_loss(HFStyle(), {"x": x[:8]})


def test_batches_of_the_wrong_kind_are_one_line_errors(data):
    x, y = data
    model = _body()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    with pytest.raises(ConfigError, match=r"expected \(x, y\) tensors.*got a dict with keys "
                       r"\['labels', 'x'\].*labels="):
        Walk(model, "cheap").step(opt, {"x": x, "labels": y})
    with pytest.raises(ConfigError, match="expected a dict with key 'labels'.*got a tuple"):
        Walk(HFStyle(), "economy", labels="labels",
             loss_fn=lambda o, t: losses.cross_entropy(o.logits, t)).step(opt, (x, y))
    with pytest.raises(ConfigError, match=r"expected \(x, y\) tensors.*got a tuple of 3 items"):
        Walk(model, "cheap").step(opt, x, y, y)
    with pytest.raises(ConfigError, match="expected labels= or per_example_loss=, got both"):
        Walk(model, "cheap", labels="labels", per_example_loss=model_loss)
    with pytest.raises(ConfigError, match="expected a loss_fn.*or a per_example_loss.*neither"):
        Walk(model, "cheap", loss_fn=None)
    with pytest.raises(ConfigError, match=r"one first dimension.*sizes \[3, 64\]"):
        Examples({"x": x, "labels": y[:3]})


def test_examples_slice_and_join_every_tensor_and_keep_the_rest(data):
    x, y = data
    e = Examples({"x": x, "labels": y, "flag": "keep", "scale": torch.tensor(2.0)})
    assert len(e) == N
    part = e[4:10]
    assert len(part) == 6 and part.data["flag"] == "keep"
    assert torch.equal(part.data["x"], x[4:10]) and torch.equal(part.data["scale"],
                                                                torch.tensor(2.0))
    joined = Examples.cat([e[:10], e[10:]])
    assert torch.equal(joined.data["labels"], y) and joined.data["flag"] == "keep"
    pair = Examples((x, y))
    assert isinstance(pair[:3].data, tuple) and torch.equal(pair[:3].data[1], y[:3])


def test_list_batches_and_lists_of_micro_batches_walk_like_tuples(data):
    """[x, y] (a DataLoader's collated TensorDataset batch) is one (x, y) batch; a list of
    (x, y) pairs is the micro-batches of one step."""
    x, y = data
    want = _tuple_walk(data)
    model = _body()
    walk = Walk(model, EVERY_BATCH_PROBE, probe_set=[x[:32], y[:32]], probe_batch=16)
    got = _train(walk, model, [[xb, yb] for xb, yb in zip(x.split(BATCH), y.split(BATCH))])
    assert_same_walk(got, want)
    model = _body()
    walk = Walk(model, "economy")
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    opt.zero_grad()
    losses.cross_entropy(model(x[:BATCH]), y[:BATCH]).mean().backward()
    walk.before_step(0.0, [(x[:8], y[:8]), (x[8:BATCH], y[8:BATCH])])
    opt.step()
    values = walk.after_step(opt)
    # f(1) on the two chunks, each normalised by its own BatchNorm statistics
    ref = copy.deepcopy(model).train().requires_grad_(False)
    per = torch.cat([losses.cross_entropy(ref(x[i : i + 8]), y[i : i + 8]) for i in (0, 8)])
    assert values["econ_f1"] == pytest.approx(float(per.double().mean()), rel=1e-6)
    whole = losses.cross_entropy(ref(x[:BATCH]), y[:BATCH]).double().mean()
    assert abs(float(whole) - values["econ_f1"]) > 1e-4  # one chunk of 16 would differ
