"""mnist and fashion_mnist: IDX fixtures, the real Debian Fashion-MNIST, downloads."""

from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sgdwalk.config import DataConfig
from sgdwalk.data import load_dataset, stratified_order
from sgdwalk.errors import ConfigError, DataError

N_TRAIN, N_TEST = 200, 50


@pytest.fixture
def mnist_folder(formats, tmp_path):
    """A folder with the four MNIST files: two raw, two gzipped."""
    arrays = formats.mnist_arrays(N_TRAIN, N_TEST)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for i, (base, array) in enumerate(arrays.items()):
        formats.write_idx(folder / (base + ".gz" if i % 2 else base), array, gz=bool(i % 2))
    return folder, arrays


def raw_scaled(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).to(torch.float32).unsqueeze(1) / 255


def test_mnist_loads_splits_and_standardises_with_train_statistics(mnist_folder):
    folder, arrays = mnist_folder
    ds = load_dataset(DataConfig(name="mnist", root=str(folder)))
    # default val: min(5000, 200 // 10) = 20, stratified and seeded, out of the training file
    assert (len(ds.train), len(ds.val), len(ds.test), len(ds.probe)) == (180, 20, 50, 180)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and ds.augment is None
    assert ds.source == str(folder)
    order = stratified_order(torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long(), 0)
    images = raw_scaled(arrays["train-images-idx3-ubyte"])[order]
    m, s = images[20:].double().mean(), images[20:].double().std(unbiased=False)
    torch.testing.assert_close(ds.train.x, ((images[20:] - m) / s).float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(ds.val.x, ((images[:20] - m) / s).float(), atol=1e-5, rtol=0)
    test_images = raw_scaled(arrays["t10k-images-idx3-ubyte"])
    torch.testing.assert_close(ds.test.x, ((test_images - m) / s).float(), atol=1e-5, rtol=0)
    labels = torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long()[order]
    assert torch.equal(ds.train.y, labels[20:]) and torch.equal(ds.val.y, labels[:20])
    assert torch.bincount(ds.val.y).tolist() == [2] * 10  # every class, in its share
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64


@pytest.mark.parametrize("augment", [True, False])
def test_fashion_augments_by_shift_and_flip_and_mnist_not_at_all(mnist_folder, augment):
    """Fashion-MNIST's augmentation (data.augment): each image is the original shifted by at
    most 3 pixels along each axis, blank where it was shifted in, mirrored or not; MNIST
    has none."""
    folder, _ = mnist_folder
    assert load_dataset(DataConfig(name="mnist", root=str(folder))).augment is None
    ds = load_dataset(DataConfig(name="fashion_mnist", root=str(folder), augment=augment))
    if not augment:
        assert ds.augment is None
        return
    x = ds.train.x[:64]
    out = ds.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    blank = float(ds.train.x.min())
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3), value=blank)
    flips = 0
    for b in range(len(x)):
        matches = [(i, j, f) for i in range(7) for j in range(7) for f in (False, True)
                   if torch.equal(out[b], (lambda c: c.flip(-1) if f else c)(
                       padded[b, :, i:i + 28, j:j + 28]))]
        assert matches, f"image {b} is not a shifted (and mirrored) copy"
        flips += all(f for _, _, f in matches)
    assert 0 < flips < len(x)  # both mirrored and unmirrored images occur


def test_val_size_and_train_size_follow_the_config(mnist_folder):
    folder, _ = mnist_folder
    full = load_dataset(DataConfig(name="mnist", root=str(folder), val_size=0))
    assert (len(full.train), len(full.val)) == (200, 0)
    small = load_dataset(DataConfig(name="mnist", root=str(folder), val_size=50, train_size=30))
    assert (len(small.train), len(small.val), len(small.probe)) == (30, 50, 30)
    # the first 30 of the 150-image training split, standardised with all 150
    ref = load_dataset(DataConfig(name="mnist", root=str(folder), val_size=50))
    assert torch.equal(small.train.x, ref.train.x[:30])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("val_size", 200, "data.val_size: expected < 200"),
        ("train_size", 181, "data.train_size: expected <= 180"),
    ],
)
def test_sizes_the_files_cannot_meet_are_config_errors(mnist_folder, field, value, message):
    folder, _ = mnist_folder
    with pytest.raises(ConfigError, match=message):
        load_dataset(DataConfig(name="mnist", root=str(folder), **{field: value}))


def test_missing_folder_says_where_it_looked_and_how_to_get_it(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="mnist", root=str(root)))
    message = str(info.value)
    assert f"no folder {root}" in message and "data.download=true" in message
    assert "\n" not in message


def test_partial_folder_names_the_missing_files(mnist_folder):
    folder, _ = mnist_folder
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=f"{folder} lacking t10k-labels-idx1-ubyte \\("):
        load_dataset(DataConfig(name="mnist", root=str(folder)))


def test_fashion_without_files_points_to_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr("sgdwalk.data.mnist.FASHION_MNIST_SYSTEM", str(tmp_path / "system"))
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="fashion_mnist"))
    message = str(info.value)
    assert f"no folder {tmp_path / 'system'}" in message
    assert f"no folder {tmp_path / 'data-root' / 'fashion_mnist'}" in message
    assert "apt-get install dataset-fashion-mnist" in message


@pytest.mark.parametrize(
    "name, array, message",
    [
        ("train-images-idx3-ubyte", np.zeros((200, 27, 28), np.uint8), "shape \\(N, 28, 28\\)"),
        ("train-images-idx3-ubyte", np.zeros((200, 28, 28), np.int16), "expected uint8 images"),
        ("train-labels-idx1-ubyte", np.zeros(199, np.uint8), "expected 200 uint8 labels"),
        ("train-labels-idx1-ubyte", np.full(200, 10, np.uint8), "expected labels in 0..9"),
    ],
)
def test_files_with_the_wrong_content_are_data_errors(mnist_folder, formats, name, array, message):
    folder, _ = mnist_folder
    for stale in folder.glob(name + "*"):
        stale.unlink()
    formats.write_idx(folder / name, array)
    with pytest.raises(DataError, match=message):
        load_dataset(DataConfig(name="mnist", root=str(folder)))


def serve_mnist(formats, http_server, monkeypatch, module_md5: str):
    """Serve gzipped fixtures under /mirror/ and make them the 'official' checksums."""
    arrays = formats.mnist_arrays(N_TRAIN, N_TEST, seed=3)
    md5 = {}
    for base, array in arrays.items():
        body = gzip.compress(formats.idx_bytes(array))
        http_server.serve(f"/mirror/{base}.gz", body)
        md5[f"{base}.gz"] = hashlib.md5(body).hexdigest()
    monkeypatch.setattr(f"sgdwalk.data.mnist.{module_md5}", md5)
    return arrays


@pytest.mark.parametrize(
    "name, module_md5", [("mnist", "MNIST_MD5"), ("fashion_mnist", "FASHION_MNIST_MD5")]
)
def test_download_fetches_verifies_and_loads(
    formats, http_server, monkeypatch, tmp_path, name, module_md5
):
    arrays = serve_mnist(formats, http_server, monkeypatch, module_md5)
    root = tmp_path / "dl"
    cfg = DataConfig(name=name, root=str(root), download=True, url=http_server.base + "/mirror")
    ds = load_dataset(cfg)
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{b}.gz" for b in arrays)
    assert torch.equal(ds.test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    http_server.routes.clear()  # a second load uses the files on disk, fetching nothing
    again = load_dataset(cfg)
    assert torch.equal(again.train.x, ds.train.x)


def test_download_into_the_cache_by_default(formats, http_server, monkeypatch, isolated_data_root):
    serve_mnist(formats, http_server, monkeypatch, "MNIST_MD5")
    ds = load_dataset(DataConfig(name="mnist", download=True, url=http_server.base + "/mirror/"))
    assert ds.source == str(isolated_data_root / "mnist")
    assert len(list((isolated_data_root / "mnist").iterdir())) == 4


def test_download_with_the_wrong_checksum_leaves_nothing(formats, http_server, tmp_path):
    arrays = formats.mnist_arrays(N_TRAIN, N_TEST)
    for base, array in arrays.items():  # served as-is: not the official files
        http_server.serve(f"/{base}.gz", gzip.compress(formats.idx_bytes(array)))
    root = tmp_path / "dl"
    cfg = DataConfig(name="mnist", root=str(root), download=True, url=http_server.base)
    with pytest.raises(
        DataError,
        match="train-images-idx3-ubyte.gz: expected md5 f68b3c2dcbeaaa9fbdd348bbdeb94873, got ",
    ):
        load_dataset(cfg)
    assert list(root.iterdir()) == []


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_the_debian_package():
    start = time.perf_counter()
    ds = load_dataset(DataConfig(name="fashion_mnist"))
    seconds = time.perf_counter() - start
    assert ds.source == str(FASHION)
    assert (len(ds.train), len(ds.val), len(ds.test), len(ds.probe)) == (55000, 5000, 10000, 512)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    # the published label balance: 6,000 of each class in train, 1,000 in test
    assert torch.bincount(torch.cat([ds.train.y, ds.val.y])).tolist() == [6000] * 10
    assert torch.bincount(ds.test.y).tolist() == [1000] * 10
    assert abs(float(ds.train.x.mean())) < 1e-4 and abs(float(ds.train.x.std()) - 1) < 1e-4
    # a blank pixel maps to -m/s, with the Fashion-MNIST train mean/std near 0.286/0.353
    lowest = float(ds.train.x.min())
    assert -0.83 < lowest < -0.79
    print(f"fashion_mnist loaded in {seconds:.2f} s")
