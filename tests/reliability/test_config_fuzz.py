"""Property-based: invalid configs and overrides give one clear line; valid ones round-trip."""

import dataclasses
import io
import string
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgdwalk.cli import main
from sgdwalk.config import (
    RunConfig,
    WalkConfig,
    config_from_toml,
    config_to_toml,
    load_config,
    replace,
)
from sgdwalk.errors import ConfigError

SECTIONS = {f.name: f.type for f in dataclasses.fields(RunConfig)}
FIELDS = {
    section: {f.name for f in dataclasses.fields(getattr(RunConfig(), section))}
    for section in ("data", "model", "optim", "train", "walk")
}

# (key, a value of the wrong kind or out of range) pairs that must be refused.
BAD_VALUES = {
    "optim.lr": ["0", "-0.1", "nan", "inf", '"fast"', "true", "[0.1]"],
    "optim.batch_size": ["0", "-3", "1.5", '"big"', "false"],
    "optim.algorithm": ['"adam"', "3", '"SGD"'],
    "optim.momentum": ["-1", '"x"'],
    "optim.noise": ['"loud"'],
    "train.epochs": ["0", "-1", '"ten"', "2.5"],
    "train.device": ['"tpu"', "1"],
    "train.max_steps": ["0", "-5"],
    "data.probe_size": ["0", "-1", '"all"'],
    "data.val_size": ["-1"],
    "data.synthetic_shape": ["[0, 3]", "[-1]"],
    "model.widths": ["[0]", "[-4, 2]", '"wide"'],
    "model.depth": ["21", "5", '"deep"'],
    "model.width_mult": ["0", "-1"],
    "walk.preset": ['"everything"', "1"],
    "walk.bn_policy": ['"train"'],
    "walk.line_points": ["2", "0"],
    "walk.line_sources": ['["train"]'],
    "walk.line": ['"sometimes"', '"every:0"', '"epochs:0"', '"every:x"'],
    "walk.barrier_ks": ["[0]"],
    "walk.noise_microbatches": ["1"],
}


def _one_line_naming(exc: ConfigError, key: str) -> bool:
    text = str(exc)
    field = key.split(".")[-1]
    return "\n" not in text and "expected" in text and field in text


@given(st.sampled_from(sorted((k, v) for k, vs in BAD_VALUES.items() for v in vs)))
def test_invalid_values_are_refused_naming_the_field(pair):
    key, value = pair
    try:
        load_config(None, [f"{key}={value}"])
    except ConfigError as exc:
        assert _one_line_naming(exc, key), str(exc)
    else:
        raise AssertionError(f"{key}={value} was accepted")


ident = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)


@given(section=st.sampled_from(sorted(FIELDS)), name=ident,
       value=st.sampled_from(["1", "0.5", "true", '"x"', "[1, 2]"]))
def test_unknown_keys_are_refused(section, name, value):
    if name in FIELDS[section]:
        return
    try:
        load_config(None, [f"{section}.{name}={value}"])
    except ConfigError as exc:
        assert "unknown key" in str(exc) and name in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError(f"{section}.{name} was accepted")


@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_any_override_string_is_accepted_or_refused_in_one_line(text):
    """No override string, however malformed, escapes as anything but a ConfigError."""
    try:
        load_config(None, [text])
    except ConfigError as exc:
        assert "\n" not in str(exc) and "expected" in str(exc)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(sorted((k, v) for k, vs in BAD_VALUES.items() for v in vs)))
def test_cli_prints_one_line_and_exits_2(tmp_path, pair):
    key, value = pair
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["train", "default", "--out", str(tmp_path), "--set", f"{key}={value}"])
    assert code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sgdwalk: error: ")
    assert not any(tmp_path.iterdir())  # nothing written


schedules = st.one_of(
    st.none(),
    st.sampled_from(["off", "every:1", "every:7", "epochs:1,10", "log:4", "steps:0,3",
                     "every:50+epochs:2"]),
)
valid_walk = st.builds(
    WalkConfig,
    preset=st.sampled_from(["off", "cheap", "economy", "line", "curvature", "full"]),
    line=schedules,
    sharpness=schedules,
    line_points=st.integers(3, 40),
    line_sources=st.lists(st.sampled_from(["batch", "probe", "heldout"]), min_size=1,
                          max_size=3, unique=True).map(tuple),
    bn_policy=st.sampled_from(["batch", "recalibrate", "eval"]),
    barrier_ks=st.lists(st.integers(1, 20), min_size=1, max_size=4).map(tuple),
    sharpness_tol=st.floats(1e-8, 0.5),
)


@given(
    lr=st.floats(1e-6, 10.0),
    batch=st.integers(1, 4096),
    widths=st.lists(st.integers(1, 512), max_size=4).map(tuple),
    seed=st.integers(0, 2**31 - 1),
    max_steps=st.one_of(st.none(), st.integers(1, 10**6)),
    walk=valid_walk,
    kwargs=st.dictionaries(st.sampled_from(["nesterov", "dampening"]),
                           st.one_of(st.booleans(), st.floats(0, 1)), max_size=2),
)
def test_valid_configs_round_trip_through_toml(lr, batch, widths, seed, max_steps, walk, kwargs):
    base = RunConfig()
    cfg = dataclasses.replace(
        base,
        optim=dataclasses.replace(base.optim, lr=lr, batch_size=batch, kwargs=kwargs),
        model=dataclasses.replace(base.model, widths=widths),
        train=dataclasses.replace(base.train, seed=seed, max_steps=max_steps),
        walk=walk,
    )
    assert config_from_toml(config_to_toml(cfg)) == cfg


# ---------------------------------------------------------------------------------------
# through the whole CLI: config, data and model meet (runtime checks included)

ALL_KEYS = sorted(f"{s}.{n}" for s, names in FIELDS.items() for n in names) + ["name"]
EDGE_VALUES = ["0", "1", "2", "3", "-1", "1.5", "-0.5", "1e-320", "1e308", "nan", "inf",
               "-inf", "true", "false", '""', '"x"', "[]", "[0]", "[1,2]", "[-1]", "{}",
               "{a=1}", "18446744073709551616", "64,32", "off", "every:1", "full", "mnist",
               "batch", "cuda:7", "SGD", "LBFGS", "synthetic", "cifar10", "vgg11", "resnet",
               "gd", "gd_noise", "Adam", "eval", "heldout", "log:2"]
CLI_BASE = ["--set", "data.probe_size=32", "--set", "data.probe_batch=32", "--set",
            "model.widths=[8]", "--set", "train.max_steps=2", "--set", "train.epochs=1",
            "--set", "optim.batch_size=64", "--set", "walk.barrier_ks=[1]", "--no-progress"]
# valid but slow (a huge model, grid or dataset): each would cost minutes, not a traceback
TOO_BIG = {("train.max_steps", "1e308"), ("data.synthetic_n", "1e308")}


def _cli_outcome(out_dir, preset: str, overrides: list[str]) -> tuple[int, list[str]]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(["train", "default", "--out", str(out_dir), *CLI_BASE, "--set",
                     f"walk.preset={preset}", *[a for o in overrides for a in ("--set", o)]])
    return code, err.getvalue().strip().splitlines()


def _check_cli(tmp_path_factory, preset, pairs):
    overrides = [f"{k}={v}" for k, v in pairs if (k, v) not in TOO_BIG]
    out_dir = tmp_path_factory.mktemp("fuzz")
    code, err = _cli_outcome(out_dir, preset, overrides)  # any exception fails the test
    assert code in (0, 2), (overrides, code, err)
    if code == 2:
        assert len(err) == 1 and err[0].startswith("sgdwalk: error: "), (overrides, err)
        assert "expected" in err[0], err[0]
        assert not any(out_dir.iterdir()), "a refused config must write nothing"


pairs = st.lists(st.tuples(st.sampled_from(ALL_KEYS), st.sampled_from(EDGE_VALUES)),
                 min_size=1, max_size=3)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=pairs)
def test_any_override_through_the_cli_trains_or_is_one_line(tmp_path_factory, pairs):
    """Typos anywhere, checked where config, data and model meet: never a traceback."""
    _check_cli(tmp_path_factory, "cheap", pairs)


@pytest.mark.slow
@settings(max_examples=1500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=pairs)
def test_any_override_with_every_probe_trains_or_is_one_line(tmp_path_factory, pairs):
    _check_cli(tmp_path_factory, "full", pairs)


def test_known_runtime_misfits_are_one_line_naming_the_field(tmp_path):
    """Values valid alone that fail against the data or model (found by the fuzz above)."""
    cases = {
        "optim.batch_size=1": "optim.batch_size: expected every mini-batch to hold 2",
        "data.probe_size=33": "data.probe_batch: expected every probe chunk to hold 2",
        "optim.batch_size=5000": "optim.batch_size: expected at most the 1257 training",
        "train.seed=18446744073709551616": "train.seed: expected an integer between",
        "optim.lr=1e308": "optim.lr: expected a finite number within float32 range",
        "walk.line_max=inf": "walk.line_max: expected a finite number",
        "walk.barrier_ks=[]": "walk.barrier_ks: expected one or more positive gaps",
        "optim.optimizer=LBFGS": "optim.optimizer: expected",
    }
    for override, message in cases.items():
        code, err = _cli_outcome(tmp_path, "full", [override])
        assert code == 2 and len(err) == 1 and message in err[0], (override, err)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------
# config and study files


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=64),
                         st.text(max_size=64).map(lambda t: t.encode("utf-8", "replace"))))
def test_any_config_file_is_one_line_or_a_config(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("file")
    path = folder / "c.toml"
    path.write_bytes(content)
    try:
        load_config(str(path))
    except ConfigError as exc:
        assert "\n" not in str(exc) and "expected" in str(exc), str(exc)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(sorted((k, v) for k, vs in BAD_VALUES.items() for v in vs)))
def test_a_bad_value_in_a_config_file_names_its_field(tmp_path_factory, pair):
    key, value = pair
    section, name = key.split(".")
    path = tmp_path_factory.mktemp("file") / "c.toml"
    path.write_text(f"# sgdwalk train {path}\n[{section}]\n{name} = {value}\n")
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["train", str(path), "--out", str(path.parent / "runs")])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and name in lines[0] and "expected" in lines[0], lines
    assert not (path.parent / "runs").exists()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(sorted((k, v) for k, vs in BAD_VALUES.items() for v in vs)))
def test_a_bad_override_of_a_sweep_names_its_field(tmp_path_factory, pair):
    key, value = pair
    out = tmp_path_factory.mktemp("sweep")
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["sweep", "trajectory", "--out", str(out), "--no-progress", "--set",
                     f"{key}={value}"])
    lines = err.getvalue().strip().splitlines()
    field = key.split(".")[-1]
    assert code == 2 and len(lines) == 1 and field in lines[0] and "expected" in lines[0], lines
    assert not any(out.iterdir())


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe[optim]\n", "expected UTF-8 TOML text, got byte b'\\xff' at offset 0"),
    (b"[optim\n", "expected valid TOML"),
    (b"optim = 3\n", "optim: expected one of the sections study, base, grid"),
])
def test_a_broken_study_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "s.toml"
    path.write_bytes(content)
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["sweep", str(path), "--out", str(tmp_path / "out")])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines


# ---------------------------------------------------------------------------------------
# valid configs round-trip through save and load, and through a run folder

VALID = {
    "data.name": ["digits", "synthetic"], "data.train_size": [100, 1000],
    "data.val_size": [0, 50], "data.augment": [True, False], "data.probe_size": [1, 64],
    "data.probe_seed": [0, 2**40], "data.synthetic_shape": [(3, 4, 4), (7,)],
    "data.synthetic_noise": [0.0, 1e-30, 2.5], "data.url": ["http://127.0.0.1:1/x/"],
    "model.name": ["mlp", "vgg11", "resnet"], "model.widths": [(), (1,), (512, 7, 3)],
    "model.batchnorm": [True, False], "model.width_mult": [0.125, 3.0],
    "model.depth": [8, 56], "model.init": ["study", "torch"],
    "optim.algorithm": ["sgd", "gd", "gd_noise"], "optim.optimizer": ["SGD", "Adam"],
    "optim.lr": [1e-6, 0.1, 3e38], "optim.momentum": [0.0, 0.9],
    "optim.weight_decay": [0.0, 5e-4], "optim.kwargs": [{}, {"nesterov": True}],
    "optim.gd_chunk": [1, 9999], "optim.gd_sum_chunks": [True, False],
    "optim.noise": ["matched", "original"], "optim.clip_grad_norm": [None, 0.5],
    "train.epochs": [1, 200], "train.max_steps": [None, 1], "train.seed": [0, -7, 2**62],
    "train.device": ["cpu", "auto", "cuda:1"], "train.checkpoint_every": [0, 3],
    "train.keep_checkpoints": [1, 9], "train.eval_train": [True, False],
    "train.flush_every": [1, 1000], "walk.line_min": [-3e38, -0.5],
    "walk.line_max": [1.0, 3e38], "walk.line_sources": [("heldout",), ("batch", "probe")],
    "walk.sharpness_tol": [1e-12, 0.5], "walk.barrier_ks": [(1,), (3, 30)],
    "name": ["run", "a b/c", "ünïcode-名前"],
}


@given(changes=st.dictionaries(st.sampled_from(sorted(VALID)),
                               st.integers(0, 2), min_size=1, max_size=8))
def test_valid_configs_round_trip_through_save_and_load(changes):
    picked = {k: VALID[k][i % len(VALID[k])] for k, i in changes.items()}
    if picked.get("walk.line_min", -0.25) >= picked.get("walk.line_max", 1.25):
        return
    cfg = replace(RunConfig(), **picked)
    text = config_to_toml(cfg)
    assert config_from_toml(text) == cfg
    assert config_to_toml(config_from_toml(text)) == text  # the saved text is a fixed point


def test_the_config_saved_with_a_run_loads_back_equal(tmp_path):
    from sgdwalk.store import RunStore
    from sgdwalk.store.identity import create_run, run_id

    cfg = replace(RunConfig(), **{k: v[-1] for k, v in VALID.items()
                                  if k not in ("walk.line_min",)})
    with create_run(cfg, tmp_path) as store:
        path = store.path
    with RunStore.open(path) as store:
        again = config_from_toml(store.config_text())
        assert store.meta()["run_id"] == run_id(cfg) == run_id(again)
    assert again == cfg
