"""The GPT trained from a config on a UTF-8 text: the per-sequence loss trained and measured,
per-token evaluation, the corpus checksum in meta.json, the walk's economy and line probes
on sequence batches with dropout on in training and off while probing, and an AdamW +
cosine run killed and resumed equal to the uninterrupted one."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

from sgdwalk import losses
from sgdwalk.config import load_config
from sgdwalk.experiment import build_trainer, resume, train
from sgdwalk.store import RunStore, read_run

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife.\n") * 40  # 4,560 characters, 31 distinct


def tiny(path, *more):
    """gpt-char shrunk to a 2-block, 16-wide GPT on `path`, 12 characters per sequence."""
    return load_config("gpt-char", [
        f"data.path={path}", "data.text_block=12", "data.probe_size=16",
        "data.probe_batch=16", "model.n_layer=2", "model.n_head=2", "model.n_embd=16",
        "model.block_size=12", "optim.batch_size=8", "optim.warmup_fraction=0.0",
        "optim.warmup_steps=2",
        "train.max_steps=12", "train.eval_every_steps=4", "train.checkpoint_every=5",
        "train.progress=false", "walk.line=every:3", *more])


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "austen.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_gpt_char_trains_measures_and_evaluates_sequences(text_file, tmp_path):
    cfg = tiny(text_file, "model.dropout=0.1")
    result = train(cfg, tmp_path / "runs")
    assert result.status == "completed" and result.steps == 12
    table = read_run(result.run_dir).sort_index()
    with RunStore.open(result.run_dir) as store:
        meta = store.meta()
    digest = hashlib.sha256(TEXT.encode()).hexdigest()
    assert f"sha256 {digest}, {len(TEXT)} bytes" in meta["data_source"]
    # the first row is the mean per-sequence loss of the first batch at theta_0, in train
    # mode (dropout on); ln(31) = 3.43 is a uniform guess over the vocabulary
    trainer = build_trainer(cfg)
    # nanoGPT's groups (optim.weight_decay_on = "matrices"): biases and LayerNorm not decayed
    assert [(g["weight_decay"], {p.dim() >= 2 for p in g["params"]})
            for g in trainer.optimizer.param_groups] == [(0.1, {True}), (0.0, {False})]
    (x, y), = trainer.batches.batch(0)
    assert x.shape == y.shape == (8, 12)
    assert 3.0 < table.loc[0, "loss"] < 3.8
    trainer.model.eval()
    with torch.no_grad():
        clean = float(losses.sequence_cross_entropy(trainer.model(x), y).double().mean())
    assert table.loc[0, "loss"] != pytest.approx(clean, rel=1e-4)  # dropout did act
    # the probes ran with dropout off: f(0) of the economy model is the clean batch loss,
    # recomputed, not the noisy training loss (reproduces_training_forward is False)
    f0 = table.loc[0, "econ_height"] + table.loc[0, "econ_floor_loss"]
    assert f0 == pytest.approx(clean, rel=1e-5)
    assert table.loc[0:11, ["econ_height", "econ_f1"]].notna().all().all()
    assert table.loc[[0, 3, 6, 9], ["line_probe_floor_loss",
                                    "line_batch_floor_loss"]].notna().all().all()
    # per-token validation accuracy and loss at theta_0 and every 4 steps
    evals = table["val_acc"].dropna()
    assert list(evals.index) == [-1, 3, 7, 11]
    assert evals.between(0, 1).all()
    assert "test_acc" not in table.columns  # the text has no test split


def test_killed_adamw_cosine_gpt_run_resumes_exactly(text_file, tmp_path):
    cfg = tiny(text_file, "optim.schedule=cosine")
    whole = read_run(train(cfg, tmp_path / "whole").run_dir).sort_index()
    cut = train(cfg, tmp_path / "cut", halt_at_step=8)  # after the checkpoint at 5
    assert cut.status == "stopped"
    again = read_run(resume(cut.run_dir).run_dir).sort_index()
    cols = ["loss", "lr", "econ_height", "val_loss", "line_probe_height"]
    assert again[cols].equals(whole[cols])
    assert whole["lr"].loc[2] == cfg.optim.lr > whole["lr"].loc[11]  # peak after warmup


def test_missing_fortunes_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sgdwalk.cli", "train", "gpt-char", "--out",
                           str(tmp_path), "--set", f"data.root={tmp_path / 'none'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"sgdwalk: error: text: expected Debian's fortunes in {tmp_path / 'none'}, got no "
        "text files there (apt-get install fortunes, or set data.path=FILE)"]
