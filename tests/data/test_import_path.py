"""data.name and model.name as import paths `package.module:factory`: a user's dataset and
model, loaded by any process from the config's text, checked like the built-in ones."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from sgdwalk.cli import main
from sgdwalk.config import DataConfig, ModelConfig
from sgdwalk.data import dataset_loader, load_dataset
from sgdwalk.errors import ConfigError, DataError
from sgdwalk.models import build_model

USERDATA = '''
import torch
from sgdwalk.data import SPLIT_SEED, Split, assemble_dataset, stratified_split

VALUE = 3


def points(n=600):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    return Split(torch.randn(n, 5, generator=g) + y[:, None].float(), y)


def make(cfg):
    test, val, train = stratified_split(points(), (60, 60), SPLIT_SEED)
    return assemble_dataset(cfg, train, val, test, num_classes=3, augment=None,
                            source="userdata")


def sorted_by_class(cfg):  # train: classes 0 and 1, test: only 2s
    data = points()
    order = torch.argsort(data.y, stable=True)
    train, test = data.take(order[:400]), data.take(order[400:])
    return assemble_dataset(cfg, train, test.take(slice(0, 0)), test, num_classes=3,
                            augment=None, source="userdata")


def not_a_dataset(cfg):
    return {"x": 1}
'''

USERMODEL = '''
import math
import torch.nn as nn


def build(cfg, input_shape, num_classes):
    width = cfg.widths[0]
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh(),
                         nn.Linear(width, num_classes))


def not_a_module(cfg, input_shape, num_classes):
    return "a model"
'''

BROKEN = "import a_dependency_that_is_not_installed\n\ndef make(cfg):\n    pass\n"


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """userdata.py, usermodel.py and broken.py in a folder on sys.path; the folder."""
    folder = tmp_path / "user"
    folder.mkdir()
    for name, text in (("userdata", USERDATA), ("usermodel", USERMODEL), ("broken", BROKEN)):
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_an_import_path_loads_the_users_dataset(user_code):
    ds = load_dataset(DataConfig(name="userdata:make", probe_size=50, train_size=300))
    assert ds.name == "userdata:make" and ds.source == "userdata"
    assert (len(ds.train), len(ds.val), len(ds.test), len(ds.probe)) == (300, 60, 60, 50)
    assert ds.num_classes == 3 and ds.input_shape == (5,)
    assert torch.bincount(ds.val.y).tolist() == [20, 20, 20]


def test_imported_datasets_pass_the_same_split_check(user_code):
    with pytest.raises(DataError, match="userdata:sorted_by_class test: expected every class "
                                        "of the training split, got no example of class 0, 1"):
        load_dataset(DataConfig(name="userdata:sorted_by_class"))


def test_a_factory_that_returns_no_dataset_is_one_line(user_code):
    with pytest.raises(ConfigError) as info:
        load_dataset(DataConfig(name="userdata:not_a_dataset"))
    assert str(info.value) == ("data.name: expected userdata:not_a_dataset to return a "
                               "sgdwalk.data.Dataset (build it with assemble_dataset), got dict")


FACTORY = "a function (DataConfig) -> sgdwalk.data.Dataset"
BAD_PATHS = {
    "nosuchmodule_xyz:make": f"expected {FACTORY} from an importable module "
                             f"'nosuchmodule_xyz' (installed, or its folder on PYTHONPATH), got "
                             f"no module named 'nosuchmodule_xyz'",
    "sgdwalk.nosuch.deeper:make": "from an importable module 'sgdwalk.nosuch.deeper' "
                                  "(installed, or its folder on PYTHONPATH), got no module "
                                  "named 'sgdwalk.nosuch'",
    "userdata:nope": f"expected {FACTORY} named 'nope' in module userdata, got no attribute "
                     f"'nope'",
    "userdata:points.deeper": "named 'points.deeper' in module userdata, got no attribute "
                              "'deeper'",
    "userdata:VALUE": f"expected {FACTORY} at userdata:VALUE, got a int (not callable)",
    "userdata:": "expected an import path module:factory such as mypackage.data:make_dataset, "
                 "got 'userdata:'",
    "a:b:c": "expected an import path module:factory such as mypackage.data:make_dataset, "
             "got 'a:b:c'",
    "my-data:make": "expected an import path module:factory",
}


@pytest.mark.parametrize("path", sorted(BAD_PATHS))
def test_a_bad_import_path_is_one_line_naming_what_was_expected(user_code, path):
    with pytest.raises(ConfigError) as info:
        dataset_loader(path)
    assert str(info.value).startswith("data.name: ") and "\n" not in str(info.value)
    assert BAD_PATHS[path] in str(info.value)


def test_a_missing_dependency_inside_the_users_module_keeps_its_traceback(user_code):
    """Their module exists but imports something absent: a bug to debug, not a bad path."""
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
        dataset_loader("broken:make")


def test_an_import_path_builds_the_users_model(user_code):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="usermodel:build", widths=(7,)), (2, 3), 4)
    assert isinstance(model, nn.Sequential) and model[1].out_features == 7
    assert model(torch.zeros(5, 2, 3)).shape == (5, 4)
    torch.manual_seed(0)  # same seed, same parameters: drawn from the global RNG
    again = build_model(ModelConfig(name="usermodel:build", widths=(7,)), (2, 3), 4)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_model_import_paths_fail_in_one_line(user_code):
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(name="usermodel:not_a_module"), (3,), 2)
    assert str(info.value) == ("model.name: expected usermodel:not_a_module to return a "
                               "torch.nn.Module, got str")
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(name="usermodel:missing"), (3,), 2)
    assert str(info.value) == (
        "model.name: expected a function (ModelConfig, input_shape, num_classes) -> "
        "torch.nn.Module named 'missing' in module usermodel, got no attribute 'missing'")


def test_a_bad_import_path_through_the_cli_is_one_line(user_code, tmp_path, capsys):
    code = main(["train", "default", "--out", str(tmp_path / "runs"), "--set",
                 "data.name=userdata:nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "got no attribute 'nope'" in err[0]
    assert not (tmp_path / "runs").exists()


TINY = ["data.probe_size=40", "data.probe_batch=20", "model.widths=[8]", "optim.batch_size=40",
        "train.max_steps=3", "train.progress=false"]


@pytest.mark.slow  # a fresh interpreter: 5-15 s
def test_another_process_imports_both_from_the_config_text_alone(user_code, tmp_path):
    """A fresh interpreter, nothing registered: PYTHONPATH and the two strings suffice."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(user_code), *filter(None, [os.environ.get("PYTHONPATH")])])}
    sets = [a for o in [*TINY, "data.name=userdata:make", "model.name=usermodel:build",
                        "model.init=torch"] for a in ("--set", o)]
    proc = subprocess.run([sys.executable, "-m", "sgdwalk.cli", "train", "default", "--out",
                           str(tmp_path / "runs"), *sets], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("completed: 3 steps"), proc.stdout
    saved = next((tmp_path / "runs").rglob("config.toml")).read_text()
    assert 'name = "userdata:make"' in saved and 'name = "usermodel:build"' in saved


@pytest.mark.slow  # two spawned workers: 15-30 s
def test_spawned_sweep_workers_import_the_users_dataset(user_code, small_study, tmp_path,
                                                        monkeypatch):
    from sgdwalk.studies import load_study, run_sweep

    monkeypatch.setenv("PYTHONPATH", str(user_code))
    variants = '[[variant]]\nlabel = "mine"\ndata.name = "userdata:make"\n'
    study = load_study(small_study(seeds=[1, 2], steps=3, variants=variants))
    result = run_sweep(study, tmp_path / "out", workers=2, progress=False)
    assert result.ok, result.summary()
    assert [r.steps for r in result.records] == [3, 3]


def test_a_study_checks_an_import_path_before_anything_trains(user_code, small_study):
    from sgdwalk.studies import load_study

    good = '[[variant]]\nlabel = "mine"\ndata.name = "userdata:make"\n'
    study = load_study(small_study(name="good", seeds=[1], variants=good))
    assert {run.data.name for run in study.runs} == {"userdata:make"}
    bad = '[[variant]]\nlabel = "mine"\ndata.name = "userdata:nope"\n'
    with pytest.raises(ConfigError, match="data.name: expected a function \\(DataConfig\\) -> "
                                          "sgdwalk.data.Dataset named 'nope' in module "
                                          "userdata, got no attribute 'nope'"):
        load_study(small_study(name="bad", seeds=[1], variants=bad))
