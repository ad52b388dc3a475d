"""Study files: expansion order and names, patches (scales and --set), validation messages,
and the shipped studies themselves."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

import pytest

from sgdwalk.config import RunConfig, dotted, to_dict
from sgdwalk.errors import ConfigError
from sgdwalk.store.identity import run_dir_name, run_id
from sgdwalk.studies import load_study, study_names
from sgdwalk.studies.reproduce import STUDIES as REPRODUCED

STUDIES = ("alignment", "barriers", "catapult", "edge-of-stability", "flatness", "lr-batch",
           "noise", "river-valley", "trajectory")

PAPER_STUDIES = sorted(REPRODUCED)  # the paper's six, `reproduce`'s default: a fashion scale

GRID_STUDY = """\
# sgdwalk sweep grid.toml --scale cpu
# Grid and variants for the expansion tests.
[base]
optim.lr = 0.1
train.epochs = 3

[grid]
optim.lr = [0.05, 0.2]
optim.batch_size = [16, 64]
train.seed = [1, 2]

[[variant]]
label = "sgd"

[[variant]]
label = "gd"
axes = ["train.seed"]
optim.algorithm = "gd"
train.epochs = 50

[[variant]]
label = "slow"
optim.lr = 0.01                      # sets a grid key: the lr axis does not multiply it

[scale.cpu]
train.epochs = 2                     # every run: the variants that set it too...
variant.gd.train.epochs = 40         # ...but a variant key is more specific, so it wins
variant.gd.optim.lr = 0.3            # one variant: the grid and slow keep their lr

[scale.big]
grid.optim.batch_size = [128]
"""


@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID_STUDY)
    return path


def _names(study):
    return [c.name for c in study.runs]


def test_shipped_studies_are_listed_and_headed_by_their_command():
    assert set(study_names()) == set(STUDIES)
    folder = resources.files("sgdwalk") / "configs" / "studies"
    for name in STUDIES:
        lines = (folder / f"{name}.toml").read_text().splitlines()
        assert lines[0] == f"# sgdwalk sweep {name} --scale cpu"
        assert lines[1].startswith("# ") and len(lines[1]) > 20


@pytest.mark.parametrize("name, scale", [(n, s) for n in STUDIES for s in ("cpu", "paper")]
                         + [(n, "fashion") for n in PAPER_STUDIES])
def test_every_shipped_study_expands_to_distinct_valid_runs(name, scale):
    study = load_study(name, scale=scale)
    names = _names(study)
    assert study.name == name and study.scale == scale and len(study) >= 2
    assert len(set(names)) == len(names) and all(n.startswith(f"{name}-") for n in names)
    assert len({run_id(c) for c in study.runs}) == len(names)
    assert names == _names(load_study(name, scale=scale))  # deterministic order
    assert all(c.name == run_dir_name(c).rsplit("-", 1)[0] for c in study.runs)
    if name == "river-valley":  # the GPT on fortunes at both scales, matched steps
        assert {(c.data.name, c.model.name) for c in study.runs} == {("text", "gpt")}
        assert len({c.train.max_steps for c in study.runs}) == 1
    elif scale == "cpu":
        assert {c.data.name for c in study.runs} == {"digits"}
    elif scale == "fashion":  # the study's MNIST MLP on an augmented Fashion-MNIST subset
        assert {c.data.name for c in study.runs} == {"fashion_mnist"}
        assert {(c.model.name, c.model.widths, c.model.batchnorm) for c in study.runs} == {
            ("mlp", (500, 350), True)}
        assert all(c.data.augment and c.data.train_size == 1000 for c in study.runs)
        assert all(c.data.probe_size <= c.data.train_size for c in study.runs)
    else:
        assert {c.data.name for c in study.runs} <= {"cifar10", "mnist"}
        assert {c.model.name for c in study.runs} <= {"vgg11", "mlp"}


def test_river_valley_cpu_model_is_in_issue_17s_range_and_decays_only_matrices():
    """2 blocks, width 96: 2 (12 d^2 + 13 d) + (V + T) d + 2 d = 237,792 parameters with
    fortunes' V = 113 characters (tied head), inside 0.2-1M; nanoGPT's decay groups."""
    from sgdwalk.models import build_model

    study = load_study("river-valley", scale="cpu")
    (m,) = {c.model for c in study.runs}
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size) == (2, 4, 96, 32)
    d, vocab, t = m.n_embd, 113, m.block_size
    count = sum(p.numel() for p in build_model(m, (t,), vocab).parameters())
    assert count == 2 * (12 * d * d + 13 * d) + (vocab + t) * d + 2 * d == 237_792
    assert 200_000 <= count <= 1_000_000
    assert {c.optim.weight_decay_on for c in load_study("river-valley", scale="paper").runs} \
        == {c.optim.weight_decay_on for c in study.runs} == {"matrices"}


def test_grid_variants_and_axes_expand_in_file_order(grid_file):
    study = load_study(grid_file)
    names = _names(study)
    sgd = [n for n in names if "-sgd-" in n]
    assert sgd[:3] == ["grid-sgd-lr0.05-b16-s1", "grid-sgd-lr0.05-b16-s2",
                       "grid-sgd-lr0.05-b64-s1"]
    assert len(sgd) == 8
    # gd: only the seed axis multiplies it; slow: it sets lr, so the lr axis is dropped
    assert [n for n in names if "-gd-" in n] == ["grid-gd-s1", "grid-gd-s2"]
    assert [n for n in names if "-slow-" in n] == ["grid-slow-b16-s1", "grid-slow-b16-s2",
                                                   "grid-slow-b64-s1", "grid-slow-b64-s2"]
    by_name = {c.name: c for c in study.runs}
    assert by_name["grid-sgd-lr0.2-b64-s2"].optim.lr == 0.2
    assert by_name["grid-sgd-lr0.2-b64-s2"].optim.batch_size == 64
    assert by_name["grid-slow-b64-s1"].optim.lr == 0.01
    assert by_name["grid-gd-s1"].optim.lr == 0.3  # from the scale
    # the scale: a plain key for every run, the specific one for the gd variant wins
    assert by_name["grid-sgd-lr0.2-b64-s2"].train.epochs == 2
    assert by_name["grid-gd-s1"].train.epochs == 40
    assert {e.variant for e in study.entries} == {"sgd", "gd", "slow"}
    assert study.entries[0].point == {"optim.lr": 0.05, "optim.batch_size": 16,
                                      "train.seed": 1}


def test_set_overrides_shrink_a_study(grid_file):
    study = load_study(grid_file, overrides=["grid.optim.lr=[0.2]", "optim.batch_size=64",
                                             "train.epochs=1"])
    names = _names(study)
    assert [n for n in names if "-sgd-" in n] == ["grid-sgd-lr0.2-b64-s1",
                                                  "grid-sgd-lr0.2-b64-s2"]
    # "everywhere" keys reach the variants that set them too
    assert {c.train.epochs for c in study.runs} == {1}
    assert {c.optim.batch_size for c in study.runs} == {64}
    assert load_study(grid_file, scale="big").runs[0].optim.batch_size == 128


def test_a_specific_set_beats_a_general_one(grid_file):
    study = load_study(grid_file, overrides=["variant.gd.train.epochs=7", "train.epochs=1"])
    epochs = {e.variant: e.config.train.epochs for e in study.entries}
    assert epochs == {"sgd": 1, "gd": 7, "slow": 1}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.lrr=0.1"], "optim.lrr: expected one of the keys"),
        (["optim.lr=-1"], "optim.lr: expected a finite number > 0, got -1.0"),
        (["grid.optim.batch_size=[16, 0]"], "optim.batch_size: expected an integer > 0, got 0"),
        (["walk.line=sometimes"], "walk.line: expected off, every:N"),
        (["variant.nope.optim.lr=0.1"], "expected variant.LABEL.KEY with a label of sgd, gd, "
                                        "slow, got 'nope'"),
        (["grid.optim.lr=[]"], "grid.optim.lr: expected a non-empty list of values, got []"),
        (["study.colour=red"], "study.colour: expected one of the keys"),
        (["optimlr"], "override: expected key=value"),
    ],
)
def test_bad_overrides_are_one_line_config_errors(grid_file, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_study(grid_file, overrides=overrides)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_bad_study_files_and_names(tmp_path, grid_file):
    with pytest.raises(ConfigError, match="expected one of alignment, barriers, .* got 'nope'"):
        load_study("nope")
    with pytest.raises(ConfigError, match="scale: expected one of cpu, big, got 'paper'"):
        load_study(grid_file, scale="paper")
    bad = tmp_path / "bad.toml"
    bad.write_text("[base]\noptim.lr = 0.1\n[grids]\nx = [1]\n")
    with pytest.raises(ConfigError, match="grids: expected one of the sections"):
        load_study(bad)
    bad.write_text("[[variant]]\nlabel = 'a'\n[[variant]]\nlabel = 'a'\n[scale.cpu]\n")
    with pytest.raises(ConfigError, match="expected distinct labels, got 'a' twice"):
        load_study(bad)
    bad.write_text("[[variant]]\nlabel = 'a b'\n[scale.cpu]\n")
    with pytest.raises(ConfigError, match="label: expected letters, digits"):
        load_study(bad)
    bad.write_text("[base]\noptim.lr = 0.1\n[grid]\noptim.lr = [0.1, 0.10]\n[scale.cpu]\n")
    with pytest.raises(ConfigError, match="expected distinct run names, got 'bad-lr0.1' twice"):
        load_study(bad)
    bad.write_text("[base\n")
    with pytest.raises(ConfigError, match="expected valid TOML"):
        load_study(bad)


def test_lr_batch_holds_equal_lr_over_b_pairs():
    """C5 needs runs with equal lr/B that differ in lr and B."""
    for scale in ("cpu", "fashion", "paper"):
        ratios: dict = {}
        for c in load_study("lr-batch", scale=scale).runs:
            ratios.setdefault(round(c.optim.lr / c.optim.batch_size, 12), set()).add(
                (c.optim.lr, c.optim.batch_size))
        assert any(len(pairs) >= 2 for pairs in ratios.values())


def test_paper_scale_follows_the_study_protocol():
    sgd = [e.config for e in load_study("trajectory", scale="paper").entries
           if e.variant == "sgd"][0]
    assert (sgd.data.name, sgd.model.name, sgd.model.batchnorm) == ("cifar10", "vgg11", True)
    assert (sgd.optim.lr, sgd.optim.batch_size, sgd.optim.weight_decay) == (0.1, 100, 1e-4)
    assert (sgd.optim.momentum, sgd.train.epochs, sgd.train.seed) == (0.0, 200, 1111)
    assert sgd.walk.line == "epochs:1,10,25,100" and sgd.data.augment
    gd = [e.config for e in load_study("trajectory", scale="paper").entries
          if e.variant == "gd"][0]
    assert gd.optim.algorithm == "gd" and gd.optim.gd_sum_chunks and gd.optim.gd_chunk == 5000
    mlp = load_study("noise", scale="paper").runs[0]
    assert (mlp.data.name, mlp.model.widths, mlp.model.batchnorm) == ("mnist", (500, 350), True)


# ---------------------------------------------------------------------------------------
# one override rule, and the shipped studies expand as they did before it

# (study, scale) -> (runs, digest of each run's variant, grid point and config values that
# differ from RunConfig's defaults), computed at commit 9736082, before the scale tables
# and --set shared one rule; "tiny" is the tests' shrunk cpu scale (the `tiny` fixture).
# The run ids (sgdwalk.store.identity.run_id) were equal then too. A new config field with a default
# leaves the digests alone; a changed default of a key a study sets changes them.
EXPANDED = {
    ("alignment", "cpu"): (8, "f5a2a37a08d7b51d"),
    ("alignment", "paper"): (4, "7127dd83dc73cbe3"),
    ("alignment", "tiny"): (2, "0e1ddad52edc6b61"),
    ("barriers", "cpu"): (6, "9700e3026b7a2c41"),
    ("barriers", "paper"): (4, "18c125fedbd4867b"),
    ("barriers", "tiny"): (2, "a48906d2d335b2e9"),
    ("flatness", "cpu"): (24, "36c3172e0dad7d8b"),
    ("flatness", "paper"): (12, "37b679a0c3a189e2"),
    ("flatness", "tiny"): (6, "c335df3f9dc2a956"),
    ("lr-batch", "cpu"): (27, "91ee89336a8e529c"),
    ("lr-batch", "paper"): (27, "69979fef2c98d782"),
    ("lr-batch", "tiny"): (2, "15d0ba52aec6cc06"),
    ("noise", "cpu"): (12, "1b46cdf9ecb75008"),
    ("noise", "paper"): (8, "0e35b275f68df8a3"),
    ("noise", "tiny"): (4, "a853bd6ab168799d"),
    ("trajectory", "cpu"): (6, "cf08651a96495e8b"),
    ("trajectory", "paper"): (2, "54539cd9889de74f"),
    ("trajectory", "tiny"): (2, "9f8323219cd16d26"),
}


def _digest(study) -> str:
    defaults = dotted(to_dict(RunConfig()))
    rows = []
    for e in study.entries:
        values = {k: v for k, v in dotted(to_dict(e.config)).items()
                  if defaults.get(k, object()) != v}
        rows.append(json.dumps([e.variant, e.point, values], default=list))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name, scale", sorted(EXPANDED))
def test_shipped_studies_expand_to_the_runs_they_always_had(name, scale, tiny):
    if scale == "tiny":
        study = load_study(name, scale="cpu", overrides=tiny(name))
    else:
        study = load_study(name, scale=scale)
    assert (len(study), _digest(study)) == EXPANDED[name, scale]


@pytest.fixture
def grid_dir(tmp_path):
    """grid.toml with two more scales: `flat` sets a plain key, `none` sets nothing."""
    path = tmp_path / "rule" / "grid.toml"
    path.parent.mkdir()
    path.write_text(GRID_STUDY + "\n[scale.flat]\noptim.lr = 0.3\n\n[scale.none]\n")
    return path


def test_a_plain_key_reaches_every_run_in_a_scale_as_in_a_set(grid_dir):
    by_scale = load_study(grid_dir, scale="flat")
    by_set = load_study(grid_dir, scale="none", overrides=["optim.lr=0.3"])
    assert ([(e.config, e.variant, e.point) for e in by_scale.entries]
            == [(e.config, e.variant, e.point) for e in by_set.entries])
    assert {c.optim.lr for c in by_scale.runs} == {0.3}  # grid axis and variant `slow` too
    assert [n for n in _names(by_scale) if "-sgd-" in n] == [
        "grid-sgd-lr0.3-b16-s1", "grid-sgd-lr0.3-b16-s2", "grid-sgd-lr0.3-b64-s1",
        "grid-sgd-lr0.3-b64-s2"]
    assert [n for n in _names(by_scale) if "-slow-" in n][0] == "grid-slow-b16-s1"


def test_the_set_beats_the_scale_and_a_specific_key_beats_a_plain_one(grid_file):
    # the scale gives gd 40 epochs (a variant key) over its 2 for every run
    assert {e.variant: e.config.train.epochs for e in load_study(grid_file).entries} == {
        "sgd": 2, "gd": 40, "slow": 2}
    # a plain --set comes after the scale: every run
    study = load_study(grid_file, overrides=["train.epochs=5"])
    assert {c.train.epochs for c in study.runs} == {5}
    # within one set of overrides the specific key wins, whatever the order
    for order in (["variant.slow.optim.lr=0.7", "optim.lr=0.3"],
                  ["optim.lr=0.3", "variant.slow.optim.lr=0.7"]):
        lrs = {e.variant: e.config.optim.lr for e in load_study(grid_file,
                                                               overrides=order).entries}
        assert lrs == {"sgd": 0.3, "gd": 0.3, "slow": 0.7}


def test_base_keys_are_refused_in_one_line(grid_file):
    with pytest.raises(ConfigError) as info:
        load_study(grid_file, overrides=["base.optim.lr=0.1"])
    assert str(info.value) == ("study grid --set base.optim.lr: expected KEY (every run), "
                               "grid.KEY or variant.LABEL.KEY, got a base key")


@pytest.mark.parametrize("override, message", [
    ("data.name=digitz", r"data\.name: expected one of .*digits.*, got 'digitz'$"),
    ("variant.gd.model.name=mlpp", r"model\.name: expected one of .*mlp.*, got 'mlpp'$"),
])
def test_an_unknown_dataset_or_model_is_one_line_naming_the_run(grid_file, override,
                                                                message):
    with pytest.raises(ConfigError) as info:
        load_study(grid_file, overrides=[override])
    text = str(info.value)
    assert re.match(r"study grid, run grid-(sgd|gd)-\S+: ", text) and "\n" not in text
    assert re.search(message, text), text
