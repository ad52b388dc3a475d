"""Every shipped preset loads and trains at tiny scale (CIFAR-10 and MNIST on fixture files
in the official formats; Fashion-MNIST from the Debian package when it is installed)."""

from pathlib import Path

import pytest

from sgdwalk.config import load_config, preset_names
from sgdwalk.experiment import train
from sgdwalk.store import read_run

FASHION = Path("/usr/share/datasets/fashion-mnist")
TINY = ["train.max_steps=3", "train.epochs=1", "train.progress=false", "data.probe_size=16",
        "data.probe_batch=8", "optim.batch_size=8", "walk.line=every:1",
        "walk.sharpness=every:2", "walk.sharpness_max_iter=6"]


# a few steps of each preset: its named windows (the CIFAR presets' curvature at chosen
# steps) lie past the end, which the run rightly warns of
@pytest.mark.filterwarnings("ignore:walk.*named steps.*never measured")
@pytest.mark.parametrize("name", preset_names())
def test_preset_trains_at_tiny_scale(name, paper_data, tmp_path):
    config = load_config(name)
    extra = []
    if config.data.name in paper_data:
        extra.append(f"data.root={paper_data[config.data.name]}")
    if config.data.name == "fashion_mnist" and not FASHION.exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    if config.model.name in ("vgg11", "resnet"):
        extra += ["model.width_mult=0.125", "model.depth=8"]
    tiny = load_config(name, [*TINY, *extra, "train.device=cpu"])
    result = train(tiny, tmp_path)
    assert result.status == "completed" and result.steps == 3
    table = read_run(result.run_dir)
    assert table.loc[0:2, "loss"].notna().all()
    assert table.loc[0:2, "line_probe_floor_a"].notna().all()
    held_out = "val_acc" if config.data.name == "text" else "test_acc"  # text: no test split
    assert set(table.columns) >= {held_out, "dist_init", "sharp_lambda_max"}
    if config.walk.preset != "cheap":
        assert table.loc[0:2, "econ_height"].notna().all()
