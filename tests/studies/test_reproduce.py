"""`sgdwalk reproduce` end to end at tiny size: every study trains, the claims are decided on
all of them together, and the printed table, claims.json and report.html agree; a second
call trains nothing and decides the same; bad input is one line and exit status 2."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from sgdwalk.cli import main
from sgdwalk.store import read_manifest
from sgdwalk.studies import load_study, study_names
from sgdwalk.studies.reproduce import EXTENSIONS, STUDIES, parse_studies

pytestmark = pytest.mark.e2e  # subprocesses, kills or whole studies: .ci/run's second layer

# --set overrides that shrink every study: one seed, three steps, a small probe set
TINY = ["train.max_steps=3", "train.seed=1", "data.probe_size=64", "data.probe_batch=32",
        "walk.sharpness_max_iter=6"]
VERDICTS = ("supported", "contradicted", "inconclusive")


def reproduce(out, *extra):
    args = ["reproduce", "--out", str(out), "--workers", "1", "--no-progress"]
    for item in TINY:
        args += ["--set", item]
    return main([*args, *extra])


def table_rows(text: str) -> dict[str, str]:
    """claim id -> verdict, from the headline rows of the printed claims table."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"(C\d+)\s+(supported|contradicted|inconclusive)\s", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """One tiny reproduction of every study: (out folder, stdout, exit status)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine runs two threads far slower than one
    out = tmp_path_factory.mktemp("reproduce") / "out"
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            status = reproduce(out)
    finally:
        torch.set_num_threads(threads)
    return out, buffer.getvalue(), status


def test_every_study_trains_into_its_folder(reproduced):
    out, text, status = reproduced
    assert status == 0, text
    assert set(STUDIES) | set(EXTENSIONS) == set(study_names())
    for name in STUDIES:
        manifest = read_manifest(out / name)
        expected = load_study(name, scale="cpu", overrides=TINY)
        assert manifest["study"] == name and manifest["scale"] == "cpu"
        assert list(manifest["claims"]) == list(expected.claims)
        assert [r["status"] for r in manifest["runs"]] == ["completed"] * len(expected)
        assert all(r["steps"] == 3 for r in manifest["runs"])
        assert re.search(rf"^{name}\s+{len(expected)} runs: {len(expected)} completed",
                         text, re.M), text


def test_table_json_and_report_agree(reproduced):
    out, text, _ = reproduced
    assert f"claims written to: {out / 'claims.json'}" in text
    assert f"report: {out / 'report.html'}" in text
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert [c["id"] for c in claims] == [f"C{i}" for i in range(1, 13)] + [
        "EOS1", "EOS2", "EOS3", "EOS4", "CAT1", "CAT2", "CAT3", "RV1", "RV2", "RV3"]
    # the extensions' claims: missing, naming the study that decides them
    assert all(c["verdict"] == "missing" and "sweep edge-of-stability" in c["needs"]
               for c in claims[12:16])
    assert all(c["verdict"] == "missing" and "sweep catapult" in c["needs"]
               for c in claims[16:19])
    assert all(c["verdict"] == "missing" and "sweep river-valley" in c["needs"]
               for c in claims[19:])
    decided = {c["id"]: c["verdict"] for c in claims if c["verdict"] != "missing"}
    assert len(decided) >= 8  # every study leaves the inputs of its claims
    assert table_rows(text) == decided
    report = (out / "report.html").read_text()
    assert "<table id='claims'>" in report
    for cid, verdict in decided.items():
        # the overview row, then the claim's own section, each with the claim's verdict
        assert re.search(rf"<td><a href='#claim-{cid}'>{cid}</a></td><td><span class='verdict "
                         rf"{verdict}'>", report), cid
        assert re.search(rf"<section class='claim' id='claim-{cid}'>\s*<h3>{cid} <span "
                         rf"class='verdict {verdict}'>", report), cid


def test_each_claim_reads_the_studies_meant_for_it(reproduced):
    out, _, _ = reproduced
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    run_ids = {name: {r["run_id"]: r["variant"] for r in read_manifest(out / name)["runs"]}
               for name in STUDIES}
    trajectory_sgd = {r for r, v in run_ids["trajectory"].items() if v == "sgd"}
    assert set(claims["C1"]["runs"]) == trajectory_sgd
    assert set(claims["C12"]["runs"]) == set(run_ids["trajectory"]) - trajectory_sgd
    assert set(claims["C9"]["runs"]) <= set(run_ids["noise"])
    for cid in ("C3", "C4", "C5"):
        assert set(claims[cid]["runs"]) <= set(run_ids["lr-batch"]), cid
    assert set(claims["C10"]["runs"]) <= set(run_ids["trajectory"]) | set(run_ids["barriers"])


def test_a_second_call_trains_nothing_and_decides_the_same(reproduced, capsys):
    out, text, _ = reproduced
    before = (out / "claims.json").read_text()
    assert reproduce(out, "--studies", ",".join(STUDIES)) == 0
    again = capsys.readouterr().out
    for name in STUDIES:
        assert re.search(rf"^{name}\s+(\d+) runs: \1 completed; \1 already done", again,
                         re.M), again
    assert table_rows(again) == table_rows(text)
    after = json.loads((out / "claims.json").read_text())
    assert after == json.loads(before)


@pytest.mark.parametrize("args, message", [
    (["--studies", "trajectory,nope"], "studies: expected distinct names"),
    (["--studies", "noise,noise"], "studies: expected distinct names"),
    (["--workers", "0"], "workers: expected an integer >= 1, got 0"),
    (["--set", "optim.lr=fast"], "optim.lr: expected"),
    (["--scale", "huge"], "invalid choice"),
])
def test_bad_input_is_one_line_and_status_2(args, message, tmp_path, capsys):
    try:
        status = main(["reproduce", "--out", str(tmp_path / "out"), *args])
    except SystemExit as exc:  # argparse's own errors exit the same way
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # nothing trained or written


def test_parse_studies():
    assert parse_studies(None) == list(STUDIES)  # the extensions only when named
    assert parse_studies("catapult,edge-of-stability") == ["catapult", "edge-of-stability"]
    assert parse_studies("river-valley") == ["river-valley"]
    assert parse_studies(" noise , trajectory") == ["noise", "trajectory"]


def test_a_relative_out_folder_gets_its_claims_and_report(tmp_path, monkeypatch):
    """The README's main job uses the default, relative runs/reproduce: the study folders
    were once joined to it twice ("runs/reproduce/runs/reproduce/noise"), after training."""
    monkeypatch.chdir(tmp_path)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = reproduce("runs/rel", "--studies", "noise")
    assert status == 0, buffer.getvalue()
    assert (tmp_path / "runs/rel/claims.json").is_file()
    assert (tmp_path / "runs/rel/report.html").is_file()
    assert "report: runs/rel/report.html" in buffer.getvalue()
