"""Property-based: invalid configs and overrides give one clear line; valid ones round-trip."""

import dataclasses
import io
import string
from contextlib import redirect_stderr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgdwalk.cli import main
from sgdwalk.config import (
    RunConfig,
    WalkConfig,
    config_from_toml,
    config_to_toml,
    load_config,
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
