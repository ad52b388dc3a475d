"""`sgdwalk config show` prints a preset's whole resolved config; `--version` its version."""

from __future__ import annotations

import dataclasses
from importlib.metadata import version

import pytest
import tomllib

from sgdwalk.cli import main
from sgdwalk.config import from_dict, load_config, preset_names


@pytest.mark.parametrize("preset", preset_names())
def test_config_show_prints_every_key_and_reads_back_to_the_same_config(preset, capsys):
    assert main(["config", "show", preset, "--set", "optim.lr=0.05"]) == 0
    text = capsys.readouterr().out
    want = load_config(preset, ["optim.lr=0.05"])
    assert from_dict(type(want), tomllib.loads(text)) == want
    for section in ("data", "model", "optim", "train", "walk"):
        for key in dataclasses.fields(getattr(want, section)):
            shown = (f"\n{key.name} = ", f"# {key.name} = (unset)", f"# {key.name} = {{}}",
                     f"[{section}.{key.name}]")
            assert any(form in text for form in shown), key.name


def test_config_show_of_an_unknown_preset_is_one_line(capsys):
    assert main(["config", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a preset" in err[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"sgdwalk {version('sgdwalk')}"
