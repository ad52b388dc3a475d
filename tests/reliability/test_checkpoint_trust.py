"""Nothing in a checkpoint is believed: its bytes are checked against their SHA-256, its run
identity against the run, its structure against the model, the optimizer and the data; an
edited config.toml is refused naming the changed keys. Exact resumption states its
condition (the thread count) and keeps `last_finite` across a resume."""

from __future__ import annotations

import hashlib
import io
import math
import random
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from sgdwalk.cli import main
from sgdwalk.config import config_to_toml, load_config, replace
from sgdwalk.errors import SgdwalkWarning
from sgdwalk.experiment import train
from sgdwalk.store import RunStore
from sgdwalk.store.identity import run_dir_name, run_id

from .conftest import equal_states, one_line_error, run_cli, same_run, sets

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

OVERRIDES = ["data.probe_size=32", "data.probe_batch=32", "model.widths=[16]",
             "optim.batch_size=64", "train.epochs=1", "train.checkpoint_every=5",
             "train.progress=false"]
CONFIG = load_config("default", OVERRIDES)
HALT = 12  # checkpoints at steps 5 and 10 are kept (keep_checkpoints = 2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return train(CONFIG, tmp_path_factory.mktemp("ref"))


def _halted(folder: Path, config=CONFIG) -> Path:
    return train(config, folder, halt_at_step=HALT).run_dir


def _main(*args) -> tuple[int, str, str]:
    """`sgdwalk ARGS` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def _one_line(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sgdwalk: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _forge(path: Path, change) -> None:
    """Rewrite checkpoint `path` with change(state) applied and a matching checksum file:
    what a hand edit or a forgery that knows the format would leave."""
    state = torch.load(path, weights_only=True)
    change(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")


def test_every_bit_flip_in_a_checkpoint_is_detected_and_resume_equals_uninterrupted(
        tmp_path, reference):
    run_dir = _halted(tmp_path)
    newest = run_dir / "checkpoints" / "step-00000010.pt"
    good = newest.read_bytes()
    with RunStore.open(run_dir) as store:
        newest.rename(newest.with_suffix(".aside"))
        want_step, want = store.latest_checkpoint()  # the previous checkpoint, as saved
        newest.with_suffix(".aside").rename(newest)
        assert want_step == 5
        rng = random.Random(1016)
        for offset in rng.sample(range(len(good)), 50):  # each flip in a fresh copy
            bad = bytearray(good)
            bad[offset] ^= 1 << rng.randrange(8)
            newest.write_bytes(bytes(bad))
            with pytest.warns(SgdwalkWarning, match="step-00000010.pt: expected sha256 .* not "
                              "loaded, resuming from step-00000005.pt instead"):
                step, state = store.latest_checkpoint()
            assert step == 5, offset  # detected: never the damaged one
            equal_states(state, want, f"flip at byte {offset}")
    # the last flip stays in place: resume passes over it, warns once, equals the reference
    proc = run_cli("resume", run_dir, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"sgdwalk: warning: run {run_dir}: checkpoint step-00000010.pt: expected sha256 "), lines
    same_run(run_dir, reference.run_dir)


def test_a_checkpoint_copied_from_another_run_is_refused(tmp_path):
    mine = _halted(tmp_path / "mine")
    other_config = replace(CONFIG, **{"optim.lr": 0.05})
    other = _halted(tmp_path / "other", other_config)
    for name in ("step-00000010.pt", "step-00000010.pt.sha256"):  # copied over, sum and all
        shutil.copy(other / "checkpoints" / name, mine / "checkpoints" / name)
    proc = run_cli("resume", mine, "--no-progress")
    one_line_error(proc, f"run {mine}: checkpoint step-00000010.pt: expected a checkpoint of "
                   f"this run (run id {run_id(CONFIG)}), got a checkpoint of run "
                   f"{run_id(other_config)}", "delete it to resume from step-00000005.pt")


def test_a_checkpoints_folder_shared_through_a_symlink_is_refused_and_left_alone(tmp_path):
    first = _halted(tmp_path / "a")
    second_config = replace(CONFIG, **{"train.seed": 1})
    second = _halted(tmp_path / "b", second_config)
    shutil.rmtree(second / "checkpoints")
    (second / "checkpoints").symlink_to(first / "checkpoints")
    before = {p.name: p.read_bytes() for p in (first / "checkpoints").iterdir()}
    for args in (["resume", second], ["train", "default", "--out", tmp_path / "b",
                                      *sets(OVERRIDES), "--set", "train.seed=1"]):
        code, _, err = _main(*args)
        _one_line(code, err, f"run {second}: checkpoints: expected the run's own checkpoints "
                  "folder, got a symbolic link to")
    assert {p.name: p.read_bytes() for p in (first / "checkpoints").iterdir()} == before


def _model_key(state) -> str:
    return next(k for k, v in state["model"].items() if v.dim() == 2)


def _momentum(state) -> None:
    state["optimizer"]["state"][0] = {"momentum_buffer": torch.zeros(3)}


STRUCTURE = {
    "step 10**12": (lambda s: s.update(step=10**12),
                    "step: expected an integer in [0, 19] (the run's total steps), got "
                    "1000000000000"),
    "step of another file": (lambda s: s.update(step=5), "step: expected 10 (the file's "
                             "name), got 5"),
    "no rng": (lambda s: s.pop("rng"), "expected the keys step, model, optimizer, data, "
               "transforms, hooks, rng, last_finite, threads, got missing rng"),
    "rng not a generator state": (lambda s: s.update(rng={"torch": 3}),
                                  "rng: expected {'torch': a generator state"),
    "a wrong weight shape": (lambda s: s["model"].update({_model_key(s): torch.zeros(2, 2)}),
                             "expected shape (16, 64) of torch.float32, got shape (2, 2)"),
    "a wrong weight dtype": (lambda s: s["model"].update(
        {_model_key(s): s["model"][_model_key(s)].double()}), "of torch.float64"),
    "a missing weight": (lambda s: s["model"].pop(_model_key(s)),
                         "model: expected the keys of the run's model, got missing"),
    "a short perm": (lambda s: s["data"].update(perm=torch.arange(10)),
                     "data: perm: expected a permutation of the 1257 training examples "
                     "(int64), got a tensor of shape (10,)"),
    "a perm that repeats": (lambda s: s["data"].update(perm=torch.zeros(1257, dtype=torch.long)),
                            "got indices that repeat or skip one"),
    "optimizer state of a wrong shape": (_momentum, "optimizer: state[0].momentum_buffer: "
                                         "expected shape"),
    "hooks of another walk": (lambda s: s.update(hooks={"nope": 1}),
                              "hooks: expected the state this run saves, got one that does "
                              "not load (KeyError"),
}


@pytest.mark.parametrize("case", list(STRUCTURE))
def test_a_checkpoint_of_the_wrong_structure_is_one_line(tmp_path, case):
    change, fragment = STRUCTURE[case]
    run_dir = _halted(tmp_path)
    _forge(run_dir / "checkpoints" / "step-00000010.pt", change)
    code, _, err = _main("resume", run_dir, "--no-progress")
    _one_line(code, err, f"run {run_dir}: checkpoint step-00000010.pt: ", fragment)


@pytest.mark.parametrize("key, value, shown", [
    ("optim.lr", 0.5, "optim.lr 0.1 -> 0.5"),
    ("optim.momentum", 0.9, "optim.momentum 0.0 -> 0.9"),
    ("model.widths", [8], "model.widths [16] -> [8]"),
    ("walk.preset", "full", "walk.preset 'cheap' -> 'full'"),
    ("optim.optimizer", "Adam", "optim.optimizer 'SGD' -> 'Adam'"),
])
def test_resume_refuses_an_edited_config_naming_the_changed_keys(tmp_path, reference, key,
                                                                 value, shown):
    run_dir = _halted(tmp_path)
    config_file = run_dir / "config.toml"
    original = config_file.read_text()
    edited = replace(CONFIG, **{key: value})
    config_file.write_text(config_to_toml(edited))
    code, _, err = _main("resume", run_dir, "--no-progress")
    _one_line(code, err, f"run {run_dir}: config.toml: expected the config the run started "
              f"with (run id {run_id(CONFIG)}), got an edited one (run id {run_id(edited)}); "
              f"changed: {shown}; restore those values")
    config_file.write_text(original)  # as the message says: restored, it resumes exactly
    assert _main("resume", run_dir, "--no-progress")[0] == 0
    same_run(run_dir, reference.run_dir)


def test_a_fork_continues_the_checkpoint_under_the_edit_as_a_new_run(tmp_path, reference):
    run_dir = _halted(tmp_path)  # newest checkpoint: step 10
    config_file = run_dir / "config.toml"
    original = config_file.read_text()
    edited = replace(CONFIG, **{"optim.lr": 0.05})
    config_file.write_text(config_to_toml(edited))
    code, out, err = _main("resume", run_dir, "--fork", "--no-progress")
    assert code == 0 and err == "", err
    child = tmp_path / run_dir_name(edited)
    assert out.startswith("completed: 19 steps") and f"run directory: {child}\n" in out
    assert config_file.read_text() == original  # the parent's record is true again
    with RunStore.open(child) as store:
        meta, rows = store.meta(), store.scalars()
        assert store.config_text() == config_to_toml(edited)
    assert meta["run_id"] == run_id(edited) and meta["status"] == "completed"
    assert meta["parent"] == {"run_id": run_id(CONFIG), "run_dir": str(run_dir), "step": 10}
    with RunStore.open(reference.run_dir) as store:
        want = store.scalars()
    assert rows.index.min() == 10 and rows.index.max() == 18
    assert (rows["lr"].dropna() == 0.05).all()  # the edit, not the checkpoint's 0.1
    assert rows.loc[10, "loss"] == want.loc[10, "loss"]  # theta_10 and batch 10 carried over
    assert rows.loc[11, "loss"] != want.loc[11, "loss"]  # then the steps are lr 0.05 steps
    assert _main("resume", run_dir, "--no-progress")[0] == 0  # the parent, untouched
    same_run(run_dir, reference.run_dir)
    code, _, err = _main("resume", run_dir, "--fork")
    _one_line(code, err, f"run {run_dir}: config.toml: expected an edited config to fork the "
              "run with, got the run's own")


def test_the_thread_count_is_recorded_and_a_resume_on_another_warns(tmp_path):
    threads = torch.get_num_threads()
    run_dir = _halted(tmp_path)
    with RunStore.open(run_dir) as store:
        assert store.meta()["torch_threads"] == threads
    other = 2 if threads != 2 else 1
    torch.set_num_threads(other)
    try:
        code, _, err = _main("resume", run_dir, "--no-progress")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    assert err.strip().splitlines() == [
        f"sgdwalk: warning: run {run_dir}: resumed on {other} torch threads, checkpointed on "
        f"{threads}: rows from step 10 on may differ from an uninterrupted run by round-off "
        f"(set OMP_NUM_THREADS={threads} for exact resumption)"]


def test_a_run_diverging_on_the_first_step_after_a_resume_keeps_its_last_finite_values(
        tmp_path):
    overrides = [*OVERRIDES, "optim.lr=1e8", "model.batchnorm=false",
                 "train.checkpoint_every=1"]
    config = load_config("default", overrides)
    whole = train(config, tmp_path / "whole")
    assert whole.status == "diverged"
    step = whole.steps
    with RunStore.open(whole.run_dir) as store:
        want = store.meta()["last_finite"]
    assert want["step"] == step - 1 and math.isfinite(want["loss"])
    cut = train(config, tmp_path / "cut", halt_at_step=step).run_dir  # a checkpoint at `step`
    assert cut.name == run_dir_name(config)
    done = _main("resume", cut, "--no-progress")
    assert done[0] == 0 and done[1].startswith(f"diverged: {step} steps"), done
    with RunStore.open(cut) as store:
        assert store.meta()["last_finite"] == want  # was {} before it was checkpointed
