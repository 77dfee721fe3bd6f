"""The digits split and the strict IDX reader, on tiny IDX files written here in the standard format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hooked_bilinear.errors import DatasetError
from hooked_bilinear.vision import IDXFormatError, VisionConfig, load_split, read_idx


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX encoding, written independently of the reader: magic 0 0 code ndim, big-endian sizes, data."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 30, n_test: int = 20, gz: bool = False) -> dict:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            name = f"{part}-{kind}" + (".gz" if gz else "")
            (raw / name).write_bytes(gzip.compress(data) if gz else data)
        arrays[part] = (images, labels)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_in_torchvisions_layout(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    split = load_split(VisionConfig(dataset="mnist", test_size=None), root=tmp_path)
    images, labels = arrays["train"]
    torch.testing.assert_close(split.train_x, torch.from_numpy(images.reshape(30, -1).astype(np.float32) / 255))
    assert split.train_y.tolist() == labels.tolist() and split.test_x.shape == (20, 784)
    assert split.train_x.dtype == torch.float32 and 0 <= split.train_x.min() and split.train_x.max() <= 1


def test_idx_fraction_split_pools_both_files(tmp_path):
    write_mnist(tmp_path, folder="FashionMNIST", n_train=40, n_test=20)
    split = load_split(VisionConfig(dataset="fashion-mnist", test_size=0.25, seed=1), root=tmp_path)
    assert (len(split.train_y), len(split.test_y)) == (45, 15)
    assert set(torch.bincount(split.test_y, minlength=10).tolist()) <= {1, 2}  # stratified: 6 per class, 25% held out


def test_read_idx_other_types(tmp_path):
    array = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    (tmp_path / "a").write_bytes(idx_bytes(array, code=0x0C))
    assert (read_idx(tmp_path / "a") == array).all()


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda b: b"\x01" + b[1:], "magic number"),
        (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX data type"),
        (lambda b: b[:-1], "the file holds"),
        (lambda b: b + b"\x00", "the file holds"),
        (lambda b: b[:6], "truncated header"),
        (lambda b: b[:3] + b"\x00", "0 dimensions"),
    ],
)
def test_malformed_idx_is_refused(tmp_path, mutate, match):
    good = idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))
    (tmp_path / "f").write_bytes(mutate(good))
    with pytest.raises(IDXFormatError, match=match):
        read_idx(tmp_path / "f")


def test_inconsistent_mnist_files_are_refused(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(29, dtype=np.uint8)))
    with pytest.raises(IDXFormatError, match="30 images but 29 labels"):
        load_split(VisionConfig(dataset="mnist", test_size=None), root=tmp_path)
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(30, 12, dtype=np.uint8)))
    with pytest.raises(IDXFormatError, match="label 12 outside"):
        load_split(VisionConfig(dataset="mnist", test_size=None), root=tmp_path)
    (raw / "t10k-images-idx3-ubyte").unlink()
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(30, dtype=np.uint8)))
    with pytest.raises(IDXFormatError, match="no t10k-images-idx3-ubyte"):
        load_split(VisionConfig(dataset="mnist", test_size=None), root=tmp_path)


def test_missing_root_is_explained(tmp_path):
    with pytest.raises(DatasetError, match="--data-root"):
        load_split(VisionConfig(dataset="mnist", test_size=None))
    with pytest.raises(DatasetError, match="torchvision's"):
        load_split(VisionConfig(dataset="mnist", test_size=None), root=tmp_path)


def test_digits_split_is_stratified_seeded_and_disjoint():
    from sklearn.datasets import load_digits

    split = load_split(VisionConfig(test_size=0.2, seed=0))
    assert (len(split.train_y), len(split.test_y)) == (1437, 360)
    assert split.train_x.shape[1] == 64 and split.train_x.max() == 1.0 and split.train_x.min() == 0.0
    counts = torch.bincount(split.test_y, minlength=10).double()
    full = torch.bincount(torch.from_numpy(load_digits().target), minlength=10).double()
    assert (counts / counts.sum() - full / full.sum()).abs().max() < 0.01
    again = load_split(VisionConfig(test_size=0.2, seed=0))
    assert torch.equal(again.test_x, split.test_x)
    other = load_split(VisionConfig(test_size=0.2, seed=1))
    assert not torch.equal(other.test_y, split.test_y)
    rows = {tuple(r) for r in split.train_x.tolist()}
    assert not any(tuple(r) in rows for r in split.test_x.tolist())
