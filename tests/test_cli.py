"""The command line: exit codes, one-line errors, and the README's commands at tiny scale."""

import subprocess
import sys

import pytest

from sgdwalk.cli import main
from sgdwalk.store import read_run

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

TINY = ["--set", "train.epochs=1", "--set", "data.probe_size=32", "--no-progress"]


def run_cli(*args):
    """Run `python -m sgdwalk.cli args` in a subprocess: (code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "sgdwalk.cli", *args], capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_train_default_preset_prints_its_run_dir(tmp_path):
    code, out, err = run_cli("train", "default", "--out", str(tmp_path), *TINY)
    assert code == 0, err
    run_dir = out.strip().splitlines()[-1].removeprefix("run directory: ")
    table = read_run(run_dir)
    assert table.index.max() == 1257 // 32 - 1 and "cos_update" in table.columns


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "default", "--set", "nope.key=1"],
         "nope: expected one of the keys data, model, name, optim, train, walk, got unknown key"),
        (["train", "default", "--set", "optim.lr=-1"],
         "optim.lr: expected a finite number > 0, got -1.0"),
        (["train", "default", "--set", "optim.lr=fast"],
         "optim.lr: expected a number, got str 'fast'"),
        (["train", "default", "--set", "data.name=imagenet"],
         "data.name: expected one of arrays, cifar10, digits, fashion_mnist, mnist, synthetic, "
         "text or an import path module:factory, got 'imagenet'"),
        (["train", "default", "--set", "model.name=alexnet"],
         "model.name: expected one of gpt, mlp, resnet, vgg11 or an import path "
         "module:factory, got 'alexnet'"),
        (["train", "default", "--set", "data.name=cifar10", "--set", "data.root=/nonexistent"],
         "/nonexistent"),
        (["train", "no_such_preset"], "expected a preset"),
        (["train", "default", "--set", "walk.line=every:x"], "walk.line: expected off, every:N"),
        (["train", "default", "--set", "optimlr"], "expected key=value"),
        (["resume", "/nonexistent/run"], "/nonexistent/run"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    code, out, err = run_cli(*args, "--out", str(tmp_path)) if args[0] == "train" else run_cli(
        *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sgdwalk: error: ") and message in lines[0]
    assert "Traceback" not in err


def test_bad_override_writes_nothing(tmp_path):
    assert main(["train", "default", "--out", str(tmp_path), "--set", "optim.lr=0"]) == 2
    assert not any(tmp_path.iterdir())


def test_presets_are_listed_and_all_load(capsys):
    from sgdwalk.config import load_config, preset_names

    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    for name in preset_names():
        assert name in listed
        load_config(name)


def test_help_explains_commands():
    code, out, _ = run_cli("--help")
    assert code == 0
    for word in ("train", "resume", "presets", "--set" if False else "examples"):
        assert word in out


def test_overrides_with_commas_keep_strings_and_split_lists():
    from sgdwalk.config import load_config

    cfg = load_config(None, ["walk.line=epochs:1,2,4", "model.widths=64,32",
                             "walk.line_sources=probe,batch", "walk.barrier_ks=3"])
    assert cfg.walk.line == "epochs:1,2,4"
    assert cfg.model.widths == (64, 32)
    assert cfg.walk.line_sources == ("probe", "batch")
    assert cfg.walk.barrier_ks == (3,)
