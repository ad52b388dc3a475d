"""Issue 16's config faults: optimizer kwargs that bypass validation, size-like settings
without a bound, TOML nested past the parser's recursion, run names longer than a file
name. Each was a wrong number, an allocation or a traceback; each is now one line."""

import dataclasses
import io
from contextlib import redirect_stderr

import pytest
import torch

from sgdwalk.cli import main
from sgdwalk.config import (
    MAX_NAME,
    MAX_TOML_DEPTH,
    SIZE_LIMITS,
    OptimConfig,
    RunConfig,
    load_config,
    parse_toml,
)
from sgdwalk.errors import ConfigError
from sgdwalk.studies.spec import read_study
from sgdwalk.train.optim import make_optimizer


def refused(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    text = str(info.value)
    assert "\n" not in text and "expected" in text
    return text


# ---------------------------------------------------------------------------- optim.kwargs


@pytest.mark.parametrize("name", sorted(f.name for f in dataclasses.fields(OptimConfig)
                                        if f.name != "kwargs"))
def test_kwargs_may_not_set_a_validated_field(name):
    """kwargs.lr = 0.5 trained at 0.5 while every table said lr 0.1."""
    text = refused([f"optim.kwargs={{{name} = 0.5}}"])
    assert text.startswith(f"optim.kwargs.{name}: expected optim.{name} instead")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "[0.9, nan]"])
def test_kwargs_numbers_must_be_finite(value):
    text = refused(["optim.optimizer=Adam", f"optim.kwargs={{eps = {value}}}"])
    assert text.startswith("optim.kwargs.eps: expected finite numbers")
    text = refused(["optim.optimizer=Adam", f"optim.kwargs={{betas = [0.9, {value}]}}"])
    assert text.startswith("optim.kwargs.betas: expected finite numbers")


def _step(optimizer_name: str, **kwargs) -> None:
    model = torch.nn.Linear(3, 2)
    opt = getattr(torch.optim, optimizer_name)(model.parameters(), lr=0.1, **kwargs)
    model(torch.randn(4, 3)).pow(2).sum().backward()
    opt.step()


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_kwargs_that_torch_cannot_step_on_cpu_are_refused(optimizer):
    """Each refusal stands on what torch does on CPU (checked here, so a torch that starts
    to accept one fails this test): differentiable fails at the first step, capturable
    asserts at the first step, foreach and fused together fail in the constructor."""
    with pytest.raises(RuntimeError):
        _step(optimizer, differentiable=True)
    with pytest.raises((RuntimeError, ValueError)):
        _step(optimizer, foreach=True, fused=True)
    name = f"optim.optimizer={optimizer}"
    assert refused([name, "optim.kwargs={differentiable = true}"]).startswith(
        "optim.kwargs.differentiable: expected false or unset")
    assert refused([name, "optim.kwargs={foreach = true, fused = true}"]).startswith(
        "optim.kwargs.fused: expected false or unset with foreach = true")


def test_capturable_is_refused_on_cpu_only():
    with pytest.raises(AssertionError):
        _step("Adam", capturable=True)
    text = refused(["optim.optimizer=Adam", "optim.kwargs={capturable = true}"])
    assert text.startswith("optim.kwargs.capturable: expected false or unset on train.device cpu")
    cfg = load_config(None, ["optim.optimizer=Adam", "optim.kwargs={capturable = true}",
                             "train.device=cuda"])
    assert cfg.optim.kwargs == {"capturable": True}


def test_capturable_with_device_auto_is_refused_once_the_parameters_are_on_the_cpu():
    cfg = load_config(None, ["optim.optimizer=Adam", "optim.kwargs={capturable = true}",
                             "train.device=auto"])  # auto may be an accelerator: allowed here
    with pytest.raises(ConfigError, match=r"^optim.kwargs.capturable: expected false or unset "
                       r"for parameters on the CPU .*got true$"):
        make_optimizer(cfg.optim, torch.nn.Linear(3, 2).parameters())


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("kwargs", ["{foreach = true}", "{fused = true}"])
def test_foreach_or_fused_alone_is_accepted_and_steps_on_cpu(optimizer, kwargs):
    cfg = load_config(None, [f"optim.optimizer={optimizer}", f"optim.kwargs={kwargs}"])
    model = torch.nn.Linear(3, 2)
    before = model.weight.detach().clone()
    opt = make_optimizer(cfg.optim, model.parameters())
    model(torch.randn(4, 3)).pow(2).sum().backward()
    opt.step()
    assert not torch.equal(model.weight, before)


# ---------------------------------------------------------------------------- size limits


def _over(key: str) -> str:
    limit = SIZE_LIMITS[key][0]
    list_valued = key in ("model.widths", "walk.barrier_ks", "data.synthetic_shape")
    return f"{key}=[{limit + 1}]" if list_valued else f"{key}={limit + 1}"


@pytest.mark.parametrize("key", sorted(SIZE_LIMITS))
def test_every_size_like_setting_has_a_stated_maximum(key):
    """walk.barrier_ks=[1000000] asked for 70 GB; model.depth=2**62-2 passed validation."""
    limit, why = SIZE_LIMITS[key]
    text = refused([_over(key)])
    assert text.startswith(f"{key}: expected at most {limit:,} ({why}), got {limit + 1}")


def test_the_reported_giants_are_refused_and_the_limits_themselves_accepted():
    assert refused(["walk.barrier_ks=[1000000]"]).startswith("walk.barrier_ks: expected at most")
    assert refused([f"model.depth={2**62 - 2}"]).startswith("model.depth: expected at most")
    cfg = load_config(None, ["walk.barrier_ks=[1, 100]", "model.depth=1202",
                             "walk.line_points=1001", "model.widths=[65536]"])
    assert (cfg.walk.barrier_ks, cfg.model.depth, cfg.walk.line_points) == ((1, 100), 1202, 1001)


def test_synthetic_data_is_bounded_by_its_total_size():
    """Each axis of synthetic_shape within its limit can still multiply to terabytes."""
    text = refused(["data.synthetic_shape=[65536, 65536]", "data.synthetic_n=2"])
    assert text.startswith("data.synthetic_shape: expected at most 268,435,456 values over "
                           "the data.synthetic_n = 2 examples")
    assert load_config(None, ["data.synthetic_shape=[16384]", "data.synthetic_n=16384"])


def test_a_list_setting_has_a_maximum_length():
    text = refused(["model.widths=[" + ", ".join(["2"] * 1025) + "]"])
    assert text.startswith("model.widths: expected at most 1024 items, got 1025")


# ---------------------------------------------------------------------------- TOML nesting


def _deep_arrays(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("content", [
    f"a = {_deep_arrays(5000)}\n",  # RecursionError inside the parser
    "[" + ".".join(["a"] * 5000) + "]\nx = 1\n",  # parses; everything after it recursed
    "a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n",
])
def test_toml_nested_5000_deep_is_one_line(tmp_path, content):
    for name, read in (("config.toml", lambda p: load_config(str(p))),
                       ("study.toml", lambda p: read_study(p))):
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(ConfigError) as info:
            read(path)
        assert f"expected TOML nested at most {MAX_TOML_DEPTH} deep" in str(info.value)
        assert "\n" not in str(info.value)
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["train", str(tmp_path / "config.toml"), "--out", str(tmp_path / "o")])
    assert code == 2 and len(err.getvalue().strip().splitlines()) == 1


def test_nesting_up_to_the_limit_parses_and_one_more_level_is_refused():
    expected: list = []
    for _ in range(MAX_TOML_DEPTH - 2):
        expected = [expected]
    assert parse_toml(f"a = {_deep_arrays(MAX_TOML_DEPTH - 1)}", "test") == {"a": expected}
    with pytest.raises(ConfigError, match="got more than"):
        parse_toml(f"a = {_deep_arrays(MAX_TOML_DEPTH)}", "test")


def test_an_override_nested_5000_deep_is_one_line():
    text = refused([f"optim.kwargs={_deep_arrays(5000)}"])
    assert text.startswith(f"override optim.kwargs: expected TOML nested at most {MAX_TOML_DEPTH}")


# ---------------------------------------------------------------------------- run names


def test_a_run_name_longer_than_a_folder_name_allows_is_one_line(tmp_path):
    """A 300-character name gave OSError: File name too long when the run folder was made."""
    text = refused(["name=" + "x" * 300])
    assert text == f"name: expected at most {MAX_NAME} characters (it names the run's folder, " \
                   "and a file name has at most 255 bytes), got 300"
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["train", "default", "--out", str(tmp_path), "--set", "name=" + "y" * 300])
    assert code == 2 and len(err.getvalue().strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_the_longest_allowed_name_makes_its_run_folder(tmp_path):
    from sgdwalk.experiment import train

    cfg = dataclasses.replace(load_config("default", ["train.max_steps=1", "walk.preset=off"]),
                              name="n" * MAX_NAME)
    assert isinstance(cfg, RunConfig)
    result = train(cfg, tmp_path, progress=False)
    assert result.run_dir.parent == tmp_path and result.run_dir.name.startswith("n" * MAX_NAME)


def test_preconditioned_sharpness_without_adam_is_refused_before_any_folder(tmp_path):
    """It reads Adam's second moments; with SGD it used to fail at its first scheduled
    step, after the run folder was made."""
    assert refused(["walk.precond_sharpness=every:1"]).startswith(
        "walk.precond_sharpness: expected \"off\" unless optim.optimizer is Adam or AdamW")
    assert load_config(None, ["walk.precond_sharpness=every:1", "optim.optimizer=AdamW"])
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["train", "default", "--set", "walk.precond_sharpness=every:1",
                     "--out", str(tmp_path), "--no-progress"]) == 2
    assert err.getvalue().startswith("sgdwalk: error: walk.precond_sharpness")
    assert not any(tmp_path.iterdir())


def test_a_line_population_smaller_than_a_line_sample_is_one_line_and_writes_nothing(tmp_path):
    """eps's finite-population correction needs N >= the examples a line is evaluated on;
    walk.line_population = 1 was a ValueError traceback from the first line."""
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["train", "default", "--set", "walk.preset=line", "--set",
                     "walk.line_population=1", "--out", str(tmp_path), "--no-progress"]) == 2
    assert err.getvalue() == ("sgdwalk: error: walk.line_population: expected at least the "
                              "512 examples a line is evaluated on (probe set 512, batch 32, "
                              "held-out 180), got 1\n")
    assert not any(tmp_path.iterdir())
