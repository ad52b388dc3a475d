"""docs/metrics.md is the contract: the trainer with every probe stores every name in it."""

import re
from pathlib import Path

from sgdwalk.experiment import train
from sgdwalk.store import RunStore

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ONLY_SOMETIMES = {"diverged", "noise_std"}  # a diverged run; GD + noise
# in no preset, and Adam/AdamW only: tests/probes/test_precond_sharpness.py checks its names
PRECOND = {"psharp_eigs", "psharp_lambda_max", "psharp_lr_lambda", "psharp_edge",
           "psharp_residual", "psharp_matvecs", "pcurv_kappa", "pcurv_lr_kappa"}


def documented_names(sources=("probe",), ks=(1, 2, 5, 10)) -> set[str]:
    """Every stored name the tables of docs/metrics.md define, placeholders expanded."""
    names = set()
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.split("|")
        found = re.findall(r"`([^`]+)`", cells[1])
        if found == ["*_layers"]:  # the per-layer row lists its names in the definition
            found = [n for n in re.findall(r"`([^`]+)`", cells[2]) if n.endswith("_layers")]
        for name in found:
            for src in sources if "_S" in name or name == "line_S" else [None]:
                expanded = name.replace("line_S", f"line_{src}") if src else name
                if "{k}" in expanded:
                    names.update(expanded.replace("{k}", str(k)) for k in ks)
                else:
                    names.add(expanded)
    return names - ONLY_SOMETIMES - PRECOND


def stored_names(run_dir) -> set[str]:
    with RunStore.open(run_dir) as store:
        names = store.names()
    return set(names["scalars"]) | set(names["vectors"])


def test_the_contract_parser_sees_every_family():
    assert PRECOND <= {n for line in DOC.read_text().splitlines() if line.startswith("| `")
                       for n in re.findall(r"`([^`]+)`", line.split("|")[1])}
    names = documented_names()
    assert {"cos_grad_wd", "line_probe_eps", "econ_curv", "curv_pred_floor_a", "sharp_eigs",
            "align_topk", "barrier_iter_k10_pos", "floor_change", "noise_snr",
            "dist_path_ratio_layers", "line_grid", "loss"} <= names
    assert not any("{" in n or "_S_" in n or "*" in n for n in names)


def test_preset_full_stores_every_documented_name(tiny_config, tmp_path):
    result = train(tiny_config(**{"walk.preset": "full"}), tmp_path)
    # econ_df1 needs walk.economy_jvp, econ_reach walk.economy_reach = "peak"
    expected = documented_names() - {"econ_df1", "econ_reach"}
    missing = expected - stored_names(result.run_dir)
    assert not missing, sorted(missing)


def test_other_sources_the_jvp_and_the_peak_reach_store_their_names(tiny_config, tmp_path):
    cfg = tiny_config(**{"walk.preset": "line", "walk.economy_jvp": "true",
                         "walk.economy_reach": "peak",
                         "walk.line_sources": '["batch", "heldout"]', "train.epochs": 1})
    stored = stored_names(train(cfg, tmp_path).run_dir)
    line_names = {n for n in documented_names(("batch", "heldout")) if n.startswith("line_")}
    assert {"econ_df1", "econ_reach"} <= stored
    assert not line_names - stored, sorted(line_names - stored)
