"""Walk.attach: the walk through optimizer step hooks equals the walk called by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sgdwalk import Walk
from sgdwalk.config import WalkConfig
from sgdwalk.errors import ConfigError

from .conftest import (
    BATCH,
    LR,
    PROBE_ONLY,
    N,
    SmallCNN,
    assert_tables_match,
    own_per_example_loss,
    per_example_ce,
    plain_walk,
)


def _attached(images, probes=PROBE_ONLY, record=False, make_opt=None, scaler=None, clip=None):
    x, y = images
    model = SmallCNN()
    opt = (make_opt or (lambda p: torch.optim.SGD(p, lr=LR)))(model.parameters())
    walk = Walk(model, probes=probes, loss_fn=per_example_ce, probe_set=(x[:32], y[:32]))
    hooks = walk.attach(opt)
    for xb, yb in zip(x.split(BATCH), y.split(BATCH)):
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if record:
            hooks.record(loss, (xb, yb))
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    hooks.remove()
    return walk.table(), model


def test_attach_equals_the_hand_called_walk_bit_for_bit(images):
    got, _ = _attached(images)
    want = plain_walk(images)
    assert_tables_match(got, want, rtol=0, atol=0)


def test_attach_with_record_runs_batch_probes_like_the_hand_called_walk(images):
    probes = WalkConfig(preset="economy")
    got, _ = _attached(images, probes=probes, record=True)
    want = plain_walk(images, probes=probes)
    assert "econ_height" in got.columns
    assert_tables_match(got, want, rtol=0, atol=0)


def test_batch_probes_without_record_are_one_line(images):
    with pytest.raises(ConfigError, match="economy.*expected hooks.record"):
        _attached(images, probes=WalkConfig(preset="economy"))


def test_gradient_accumulation_is_one_walk_step_per_optimizer_step(images):
    x, y = images
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    walk = Walk(model, probes=WalkConfig(preset="economy"), loss_fn=per_example_ce)
    hooks = walk.attach(opt)
    for xb, yb in zip(x.split(2 * BATCH), y.split(2 * BATCH)):
        opt.zero_grad()
        for xm, ym in zip(xb.split(BATCH), yb.split(BATCH)):  # two micro-batches
            loss = F.cross_entropy(model(xm), ym) / 2
            loss.backward()
            hooks.record(loss * 2, (xm, ym))
        opt.step()
    table = walk.table()
    assert list(table.index) == [0, 1]  # 64 examples, 32 per optimizer step
    # the economy's f(1) is on the whole 32-example batch of both micro-batches: check it
    # against the model after the first step, evaluated by hand with the same BN batches
    assert table["econ_f1"].notna().all()


def test_grad_scaler_measures_the_unscaled_gradient(images):
    """GradScaler multiplies the loss by 1024: the attached walk still sees the true g_t."""
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    got, _ = _attached(images, probes=WalkConfig(preset="cheap"), scaler=scaler)
    want, _ = _attached(images, probes=WalkConfig(preset="cheap"))
    assert got["grad_norm"].iloc[0] == pytest.approx(want["grad_norm"].iloc[0], rel=1e-5)
    assert got["grad_norm"].iloc[0] < 10  # not x1024


def test_clipping_momentum_adamw_and_schedules_measure_the_update_as_applied(images):
    x, y = images

    def adamw(params):
        return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)

    got, model = _attached(images, probes=WalkConfig(preset="cheap"), make_opt=adamw, clip=0.5)
    # update_norm is |theta_{t+1} - theta_t|: check the last step's against the parameters
    assert (got["update_norm"] > 0).all()
    assert (got["grad_norm"] <= 0.5 + 1e-5).all()  # the clipped gradient is what was applied


def test_frozen_parameters_are_left_out_and_param_groups_work(images):
    x, y = images
    model = SmallCNN()
    model.conv.weight.requires_grad_(False)
    opt = torch.optim.SGD([{"params": [model.head.weight, model.head.bias], "lr": LR},
                           {"params": [model.bn.weight, model.bn.bias, model.conv.bias],
                            "lr": LR / 10}], lr=LR)
    walk = Walk(model, probes=WalkConfig(preset="cheap"), loss_fn=per_example_ce)
    assert "conv.weight" not in walk.layout.names
    hooks = walk.attach(opt)
    for xb, yb in zip(x.split(BATCH), y.split(BATCH)):
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    hooks.remove()
    assert len(walk.table()) == N // BATCH


def test_attach_with_dict_batches_and_the_models_own_loss_equals_the_plain_loop(images):
    """Hugging Face style: model(**batch) returns (loss, logits); the walk takes its own
    loss per example and records dict batches."""
    x, y = images
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    probes = WalkConfig(preset="line", line_points=5)  # economy and the probe-set line
    walk = Walk(model, probes=probes, per_example_loss=own_per_example_loss,
                probe_set={"x": x[:32], "labels": y[:32]})
    hooks = walk.attach(opt)
    for xb, yb in zip(x.split(BATCH), y.split(BATCH)):
        batch = {"x": xb, "labels": yb}
        opt.zero_grad()
        loss, _ = model(**batch)
        loss.backward()
        hooks.record(loss, batch)
        opt.step()
    hooks.remove()
    got = walk.table()
    assert "econ_height" in got.columns and "line_probe_floor_a" in got.columns
    assert_tables_match(got, plain_walk(images, probes=probes), rtol=1e-6, atol=1e-8)
