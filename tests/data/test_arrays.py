"""data.name = "arrays": a user's .npz file, split stratified when only train is given, and
read without unpickling or expanding past the declared sizes."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from sgdwalk.cli import main
from sgdwalk.config import DataConfig
from sgdwalk.data import load_dataset, read_npz, stratified_split
from sgdwalk.data.types import Split
from sgdwalk.errors import ConfigError, DataError


def images(n: int, classes: int = 4, seed: int = 0):
    """uint8 images (n, 1, 6, 6) and labels sorted by class (the hard case for a split)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 1, 6, 6), dtype=np.uint8),
            np.sort(np.arange(n) % classes).astype(np.int32))


def save(path, **arrays):
    np.savez_compressed(path, **arrays)
    return path


def load(path, **settings):
    return load_dataset(DataConfig(name="arrays", path=str(path), probe_size=32, **settings))


def test_only_train_is_split_stratified_and_seeded_into_train_val_test(tmp_path):
    x, y = images(400)
    ds = load(save(tmp_path / "a.npz", x_train=x, y_train=y))
    assert (len(ds.train), len(ds.val), len(ds.test), len(ds.probe)) == (320, 40, 40, 32)
    assert ds.num_classes == 4 and ds.input_shape == (1, 6, 6) and ds.augment is None
    assert ds.source == str(tmp_path / "a.npz") and ds.name == "arrays"
    for split in (ds.train, ds.val, ds.test):  # every class in its share, sorted file or not
        assert torch.bincount(split.y).tolist() == [len(split) // 4] * 4
    # test first, then val, by the fixed seed: the documented cut, uint8 scaled by 1/255
    whole = Split(torch.from_numpy(x).float() / 255, torch.from_numpy(y).long())
    test, val, train = stratified_split(whole, (40, 40), seed=0)
    for got, want in ((ds.train, train), (ds.val, val), (ds.test, test)):
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
    torch.manual_seed(123)  # the run seed plays no part
    assert torch.equal(load(tmp_path / "a.npz").val.x, ds.val.x)


def test_given_splits_are_used_as_they_are(tmp_path):
    x, y = images(100, seed=1)
    xv, yv = images(20, seed=2)
    xt, yt = images(30, seed=3)
    path = save(tmp_path / "a.npz", x_train=x.astype(np.float64), y_train=y,
                x_val=xv.astype(np.float16), y_val=yv.astype(np.uint8), x_test=xt / 7,
                y_test=yt.astype(np.int64))
    ds = load(path)
    assert torch.equal(ds.train.x, torch.from_numpy(x).float())  # floats are not rescaled
    assert torch.equal(ds.val.x, torch.from_numpy(xv.astype(np.float16)).float())
    assert torch.equal(ds.test.x, torch.from_numpy(xt / 7).float())
    assert ds.train.y.dtype == ds.val.y.dtype == torch.int64
    assert torch.equal(ds.test.y, torch.from_numpy(yt).long())


def test_a_given_test_split_and_validation_cut_from_train(tmp_path):
    x, y = images(200)
    xt, yt = images(40, seed=5)
    ds = load(save(tmp_path / "a.npz", x_train=x, y_train=y, x_test=xt, y_test=yt),
              val_size=40, train_size=100)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (100, 40, 40)
    assert torch.bincount(ds.val.y).tolist() == [10] * 4
    assert torch.equal(ds.test.x, torch.from_numpy(xt).float() / 255)


def test_the_class_count_comes_from_the_training_labels(tmp_path):
    x, y = images(100)
    xv, _ = images(10)
    path = save(tmp_path / "a.npz", x_train=x, y_train=y, x_val=xv, y_val=np.full(10, 4))
    with pytest.raises(DataError, match="arrays val: expected labels in \\[0, 4\\), got \\[4, 4"):
        load(path)


X, Y = images(50)
BAD = {  # the arrays of the file -> the message
    "x without y": ({"x_train": X}, "expected x_train and y_train together, got x_train"),
    "no train": ({"x_test": X, "y_test": Y}, "expected x_train and y_train together, got "
                                             "neither"),
    "val without y": ({"x_train": X, "y_train": Y, "x_val": X},
                      "expected x_val and y_val together, got x_val"),
    "unknown key": ({"x_train": X, "y_train": Y, "x_valid": X},
                    "expected arrays named x_train, y_train, x_val, y_val, x_test, y_test, got "
                    "'x_valid'"),
    "integer x": ({"x_train": X.astype(np.int64), "y_train": Y},
                  "expected x_train of a float dtype or uint8, got int64"),
    "float y": ({"x_train": X, "y_train": Y.astype(np.float32)},
                "expected y_train of an integer dtype, got float32"),
    "lengths": ({"x_train": X, "y_train": Y[:49]},
                "expected x_train of shape \\(N, ...\\) and y_train of shape \\(N,\\) with N >= 1, "
                "got \\(50, 1, 6, 6\\) and \\(49,\\)"),
    "flat x": ({"x_train": np.zeros(50, np.float32), "y_train": Y},
               "got \\(50,\\) and \\(50,\\)"),
    "negative label": ({"x_train": X, "y_train": Y - 1},
                       "expected y_train of labels in \\[0, 1048576\\), got \\[-1, 2\\]"),
    "huge label": ({"x_train": X, "y_train": Y.astype(np.uint64) + 2**63},
                   "expected y_train of labels in \\[0, 1048576\\), got \\[-9223372036854775808"),
    "empty": ({"x_train": np.zeros((0, 3), np.float32), "y_train": np.zeros(0, np.int64)},
              "with N >= 1, got \\(0, 3\\) and \\(0,\\)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arrays_are_one_line(tmp_path, case):
    arrays, message = BAD[case]
    with pytest.raises(DataError, match=message) as info:
        load(save(tmp_path / "a.npz", **arrays))
    assert "\n" not in str(info.value)


def test_inputs_that_are_not_finite_are_one_line(tmp_path):
    x = images(100)[0].astype(np.float32)
    x[7, 0, 2, 3] = np.nan
    with pytest.raises(DataError, match="arrays (train|val|test): expected finite inputs, got "
                                        "nan in example"):
        load(save(tmp_path / "a.npz", x_train=x, y_train=images(100)[1]))


@pytest.mark.parametrize("settings, message", [
    ({}, "data.path: expected the .npz file of x_train, y_train"),
    ({"val_size": 5}, "data.val_size: expected none when .* holds x_val \\(that split is "
                      "given\\), got 5"),
    ({"test_size": 60, "val_size": 40}, "data.test_size/val_size: expected fewer than the 100 "
                                        "training examples of .* together, got 60 test, 40 val"),
])
def test_settings_the_file_cannot_meet_are_config_errors(tmp_path, settings, message):
    x, y = images(100)
    path = save(tmp_path / "a.npz", x_train=x, y_train=y, **(
        {"x_val": x[:8], "y_val": y[:8]} if "val_size" in settings and len(settings) == 1
        else {}))
    with pytest.raises(ConfigError, match=message):
        if settings:
            load(path, **settings)
        else:
            load_dataset(DataConfig(name="arrays"))


# ---------------------------------------------------------------------------------------
# the reader: no unpickling, no expansion past what is declared


def npy_member(header: dict, body: bytes) -> bytes:
    """An .npy file with a hand-written header (format 1.0)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + body


def zipped(path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_read_npz_round_trips_every_numeric_dtype_and_order(tmp_path):
    arrays = {f"a{i}": np.arange(24).astype(t).reshape(2, 3, 4)
              for i, t in enumerate([np.uint8, np.int8, np.int16, ">i4", "<u8", np.float16,
                                     ">f8", np.bool_])}
    arrays["fortran"] = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.savez(tmp_path / "a.npz", **arrays)
    got = read_npz(tmp_path / "a.npz")
    assert sorted(got) == sorted(arrays)
    for name, want in arrays.items():
        assert got[name].dtype == want.dtype.newbyteorder("=") and got[name].dtype.isnative
        np.testing.assert_array_equal(got[name], want)


def test_an_object_array_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    payload = np.array([None, f"touch {marker}"], dtype=object)
    np.savez(tmp_path / "a.npz", x_train=payload)  # numpy pickles object arrays
    with pytest.raises(DataError, match="x_train.npy: expected a numeric dtype \\(bool, int, "
                                        "uint, float\\), got object"):
        read_npz(tmp_path / "a.npz")
    assert not marker.exists()


def test_a_header_declaring_more_than_its_member_is_refused_before_allocating(tmp_path):
    member = npy_member({"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)},
                        b"\x00" * 64)
    path = zipped(tmp_path / "a.npz", {"x_train.npy": member})
    with pytest.raises(DataError, match="x_train.npy: expected at most [0-9]+ bytes \\(its size "
                                        "in the archive\\), got a header declaring shape "
                                        "\\(1000000, 1000000\\) of float64 \\(8000000000000 "
                                        "bytes\\)"):
        read_npz(path)


def test_a_zip_bomb_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    """64 MB of zeros deflate to 64 KB; the declared size decides, before any expansion."""
    big = npy_member({"descr": "|u1", "fortran_order": False, "shape": (64 << 20,)},
                     bytes(64 << 20))
    path = zipped(tmp_path / "a.npz", {"x_train.npy": big})
    assert path.stat().st_size < 200_000
    monkeypatch.setattr("sgdwalk.data.limits.MAX_DATA_BYTES", 1 << 20)
    with pytest.raises(DataError, match="expected at most 1048576 bytes of data, got 1 members "
                                        "declaring \\(67108[0-9]+ bytes\\)"):
        read_npz(path)


def test_a_member_longer_than_its_header_says_is_refused(tmp_path):
    member = npy_member({"descr": "|u1", "fortran_order": False, "shape": (4,)}, b"\x01" * 5)
    with pytest.raises(DataError, match="expected 4 data bytes for shape \\(4,\\) of uint8, "
                                        "got more"):
        read_npz(zipped(tmp_path / "a.npz", {"x_train.npy": member}))


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "expected an .npz file \\(a zip archive of .npy arrays"),
    (None, "expected members NAME.npy, as numpy.savez writes, got 'notes.txt'"),
])
def test_files_that_are_not_npz_are_one_line(tmp_path, content, message):
    path = tmp_path / "a.npz"
    if content is None:
        zipped(path, {"notes.txt": b"hello"})
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_npz(path)


def test_a_damaged_member_is_one_line(tmp_path):
    x, y = images(50)
    path = save(tmp_path / "a.npz", x_train=x, y_train=y)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the compressed x_train
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="x_train.npy: expected a complete .npy member, got"):
        read_npz(path)


def test_the_cli_trains_on_arrays(tmp_path, capsys):
    x, y = images(300)
    path = save(tmp_path / "mine.npz", x_train=x, y_train=y)
    code = main(["train", "default", "--out", str(tmp_path / "runs"), "--no-progress",
                 "--set", "data.name=arrays", "--set", f"data.path={path}",
                 "--set", "data.probe_size=32", "--set", "model.widths=[8]",
                 "--set", "optim.batch_size=20", "--set", "train.max_steps=3"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("completed: 3 steps"), out
