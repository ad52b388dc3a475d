"""Untrusted files: no code path unpickles downloaded or user-supplied data. A malicious
pickle planted as a run's newest checkpoint is refused by `sgdwalk resume` in one line, and
its payload never runs; the source is checked for every way to unpickle."""

from __future__ import annotations

import ast
import hashlib
import io
import os
import pickle
import zipfile
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import torch

import sgdwalk
from sgdwalk.cli import main
from sgdwalk.config import load_config
from sgdwalk.experiment import train
from sgdwalk.store.identity import run_dir_name

from .conftest import one_line_error, run_cli, same_run

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

OVERRIDES = ["data.probe_size=32", "data.probe_batch=32", "model.widths=[16]",
             "optim.batch_size=64", "train.epochs=1", "train.checkpoint_every=5",
             "train.progress=false"]


class _Payload:
    """Unpickling this runs a shell command (what a hostile checkpoint would do)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _malicious(form: str, marker: Path) -> bytes:
    state = {"step": 10, "model": _Payload(f"touch {marker}")}
    buffer = io.BytesIO()
    if form == "torch_zip":  # what torch.save writes, with the payload inside
        torch.save(state, buffer)
    else:
        pickle.dump(state, buffer, protocol=2)
    return buffer.getvalue()


@pytest.mark.parametrize("form", ["torch_zip", pytest.param("raw_pickle",
                                                            marks=pytest.mark.slow)])
def test_a_planted_malicious_checkpoint_is_refused_by_resume_and_never_runs(tmp_path, form):
    config = load_config("default", OVERRIDES)
    reference = train(config, tmp_path / "ref")
    halted = train(config, tmp_path / "runs", halt_at_step=12)
    run_dir = halted.run_dir
    marker = tmp_path / "payload-ran"
    newest = run_dir / "checkpoints" / "step-00000013.pt"  # newer than the real ones
    payload = _malicious(form, marker)
    newest.write_bytes(payload)
    assert zipfile.is_zipfile(newest) == (form == "torch_zip")

    # planted alone: its bytes match no checksum, so it is passed over unread
    proc = run_cli("resume", run_dir, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"sgdwalk: warning: run {run_dir}: checkpoint step-00000013.pt: expected its checksum "
        "file step-00000013.pt.sha256, got none; not loaded, resuming from step-00000010.pt "
        "instead"]
    assert not marker.exists(), "the payload ran"
    same_run(run_dir, reference.run_dir)

    # planted with a forged checksum file: weights_only refuses it, in one line
    again = train(config, tmp_path / "again", halt_at_step=12).run_dir
    newest = again / "checkpoints" / "step-00000013.pt"
    newest.write_bytes(payload)
    sums = again / "checkpoints" / "step-00000013.pt.sha256"
    sums.write_text(f"{hashlib.sha256(payload).hexdigest()}  step-00000013.pt\n")
    proc = run_cli("resume", again, "--no-progress")
    one_line_error(proc, f"run {again}: checkpoint step-00000013.pt: expected tensors and "
                   "plain containers, got ", "delete it to resume from step-00000010.pt")
    assert not marker.exists(), "the payload ran"
    err = io.StringIO()  # `train` of the same config continues the run: the same refusal
    with redirect_stderr(err):
        code = main(["train", "default", "--out", str(tmp_path / "again"),
                     *[a for o in OVERRIDES for a in ("--set", o)]])
    assert code == 2 and "checkpoint step-00000013.pt: expected tensors" in err.getvalue()
    assert not marker.exists(), "the payload ran"

    newest.unlink()  # as the message says: the run resumes from its last real checkpoint
    assert main(["resume", str(again), "--no-progress"]) == 0
    assert not marker.exists() and not sums.exists()  # removed with the next rotation
    same_run(again, reference.run_dir)


def test_a_run_folder_with_a_garbage_config_is_one_line(tmp_path):
    config = load_config("default", OVERRIDES)
    halted = train(config, tmp_path, halt_at_step=3)
    (halted.run_dir / "config.toml").write_bytes(b"\x80\x04\x95 a pickle, not TOML")
    one_line_error(run_cli("resume", halted.run_dir), "config.toml: expected UTF-8 text")
    assert (halted.run_dir / "checkpoints").is_dir()
    assert run_dir_name(config) == halted.run_dir.name


# ---------------------------------------------------------------------------------------
# the source: no way to unpickle anything

SOURCE = Path(sgdwalk.__file__).parent
UNPICKLERS = {  # module -> functions that unpickle (or run) data they are given
    "pickle": {"load", "loads", "Unpickler"},
    "_pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads"},
    "dill": {"load", "loads"},
    "cloudpickle": {"load", "loads"},
    "joblib": {"load"},
    "shelve": {"open"},
    "marshal": {"load", "loads"},
    "yaml": {"load", "unsafe_load", "full_load"},
    "pd": {"read_pickle"},
    "pandas": {"read_pickle"},
}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                yield node, f.value.id, f.attr
            elif isinstance(f, ast.Name):
                yield node, None, f.id


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def _unsafe_calls(path: Path) -> list[str]:
    found = []
    for node, owner, name in _calls(ast.parse(path.read_text(), str(path))):
        where = f"{path.name}:{node.lineno}"
        if owner == "torch" and name == "load" and _keyword(node, "weights_only") is not True:
            found.append(f"{where}: torch.load without weights_only=True")
        elif owner in ("np", "numpy") and name == "load" and _keyword(node, "allow_pickle"):
            found.append(f"{where}: np.load(allow_pickle=...)")
        elif name in UNPICKLERS.get(owner, ()) or name == "read_pickle":
            found.append(f"{where}: {owner}.{name}")
        elif owner is None and name in ("eval", "exec"):
            found.append(f"{where}: {name}()")
    return found


def test_no_code_path_unpickles_data():
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 50
    found = [f for path in files for f in _unsafe_calls(path)]
    assert found == []
    loads = [path.name for path in files
             if any((o, n) == ("torch", "load") for _, o, n in _calls(ast.parse(path.read_text())))]
    assert loads == ["checkpoints.py"]  # the one place, with weights_only=True


def test_the_scan_flags_each_way_to_unpickle(tmp_path):
    """The check above is only as good as its patterns: each of these must be flagged,
    and the safe forms must not."""
    lines = ["torch.load(f)", "torch.load(f, weights_only=False)", "pickle.loads(b)",
             "pickle.Unpickler(f)", "np.load(f, allow_pickle=True)", "pd.read_pickle(f)",
             "eval(s)", "exec(s)", "joblib.load(f)", "yaml.load(s)", "marshal.loads(b)"]
    bad = tmp_path / "bad.py"
    bad.write_text("\n".join(lines) + "\n")
    assert len(_unsafe_calls(bad)) == len(lines), _unsafe_calls(bad)
    ok = tmp_path / "ok.py"
    ok.write_text("torch.load(f, weights_only=True)\nnp.load(f)\nmodel.eval()\n"
                  "try:\n    x\nexcept pickle.UnpicklingError:\n    pass\n")
    assert _unsafe_calls(ok) == []
