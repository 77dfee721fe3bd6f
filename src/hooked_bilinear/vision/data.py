"""Image data as flat float pixels in [0, 1] with integer labels, and the train / test split.

- `digits`: scikit-learn's `load_digits` (1797 8x8 images, values 0..16, shipped inside scikit-learn: no download),
  divided by 16, split by `train_test_split(..., test_size, random_state=seed, stratify=y)`.
- `mnist`, `fashion-mnist`: the standard IDX files, in torchvision's folder layout (`<root>/MNIST/raw/` and
  `<root>/FashionMNIST/raw/`, holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
  `t10k-labels-idx1-ubyte`, each optionally gzipped `.gz`), read by a strict reader (magic number, dimensions and
  sizes checked). With `test_size=None` the files' own train / test split is used; with a fraction, the two files
  are pooled and split as the digits are. Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from beartype import beartype
from jaxtyping import Float, Int

from hooked_bilinear.errors import DatasetError
from hooked_bilinear.vision.config import VisionConfig

#: torchvision's folder names under the root.
IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
#: The IDX type codes (third byte of the magic number) and the numpy dtypes they stand for (big-endian).
IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXFormatError(DatasetError):
    """A file is not a well-formed IDX file, or image and label files do not match."""


@dataclass(frozen=True)
class Split:
    """Flat pixels in [0, 1] (float32) and labels, for training and for testing."""

    train_x: Float[torch.Tensor, "n_train n_pixels"]
    train_y: Int[torch.Tensor, " n_train"]
    test_x: Float[torch.Tensor, "n_test n_pixels"]
    test_y: Int[torch.Tensor, " n_test"]


@beartype
def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped when the name ends in .gz) as a numpy array of its declared type and dimensions.

    Args:
        path: the IDX file (gzip-compressed when its name ends in .gz).

    Returns:
        The data as a read-only numpy array of the header's shape and data type (big-endian for multi-byte types).

    Raises:
        IDXFormatError: the file does not exist, its magic number or data type is not IDX's, it declares 0
            dimensions, or its header or data length does not match.
    """
    path = Path(path)
    if not path.is_file():
        raise IDXFormatError(f"{path} does not exist.")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IDXFormatError(f"{path}: not an IDX file (the magic number must start with two zero bytes).")
    code, n_dims = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise IDXFormatError(
            f"{path}: unknown IDX data type 0x{code:02x} (known: {', '.join(f'0x{c:02x}' for c in IDX_TYPES)})."
        )
    if n_dims == 0:
        raise IDXFormatError(f"{path}: IDX header declares 0 dimensions.")
    header = 4 + 4 * n_dims
    if len(raw) < header:
        raise IDXFormatError(f"{path}: truncated header ({len(raw)} bytes for {n_dims} dimensions).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IDXFormatError(
            f"{path}: header declares shape {shape} of {dtype.name} ({expected} bytes of data), "
            f"the file holds {len(raw) - header}."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise IDXFormatError(
        f"{folder} has no {stem} (or {stem}.gz): put the standard IDX files there (torchvision's "
        "layout <root>/MNIST/raw/ or <root>/FashionMNIST/raw/)."
    )


def read_idx_pair(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, 28 * 28] as float32 in [0, 1] and labels [n] of one part ("train" or "t10k")."""
    images = read_idx(_idx_file(folder, f"{part}-images-idx3-ubyte"))
    labels = read_idx(_idx_file(folder, f"{part}-labels-idx1-ubyte"))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IDXFormatError(
            f"{folder}/{part}-images: expected unsigned-byte images [n, rows, cols], got "
            f"{images.dtype.name} of shape {images.shape}."
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IDXFormatError(
            f"{folder}/{part}-labels: expected unsigned-byte labels [n], got "
            f"{labels.dtype.name} of shape {labels.shape}."
        )
    if images.shape[0] != labels.shape[0]:
        raise IDXFormatError(f"{folder}: {part} has {images.shape[0]} images but {labels.shape[0]} labels.")
    if images.shape[1:] != (28, 28):
        raise IDXFormatError(
            f"{folder}/{part}-images: images are {images.shape[1]}x{images.shape[2]}, MNIST and "
            "Fashion-MNIST are 28x28."
        )
    if labels.size and labels.max() > 9:
        raise IDXFormatError(f"{folder}/{part}-labels: label {int(labels.max())} outside 0..9.")
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)


def load_arrays(dataset: str, root: str | Path | None = None) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The dataset as ((x, y),) for digits, or ((train_x, train_y), (test_x, test_y)) from IDX files under `root`."""
    if dataset == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return ((digits.data.astype(np.float32) / 16.0, digits.target.astype(np.int64)),)
    if dataset not in IDX_FOLDERS:
        raise DatasetError(f"unknown dataset {dataset!r}: use digits, mnist or fashion-mnist.")
    if root is None:
        raise DatasetError(
            f"{dataset} is read from local IDX files: pass the folder that holds "
            f"{IDX_FOLDERS[dataset]}/raw/ (torchvision's layout) as root (CLI: --data-root)."
        )
    folder = Path(root) / IDX_FOLDERS[dataset] / "raw"
    if not folder.is_dir():
        raise DatasetError(
            f"{folder} does not exist: {dataset} needs the standard IDX files there (torchvision's "
            "layout; nothing is downloaded)."
        )
    return read_idx_pair(folder, "train"), read_idx_pair(folder, "t10k")


@beartype
def load_split(config: VisionConfig, root: str | Path | None = None) -> Split:
    """The train / test split the config records (see the module doc).

    Args:
        config: the classifier's config: dataset, test_size (None: the files' own train / test parts; otherwise a
            stratified split of all images, seeded by `config.seed`).
        root: the folder holding the IDX files for mnist / fashion-mnist (torchvision's layout
            <root>/MNIST/raw/, <root>/FashionMNIST/raw/); not used for digits.

    Returns:
        The `Split`: train_x [n_train, n_pixels] and test_x [n_test, n_pixels] (float32 in [0, 1]), train_y and
        test_y (int64).

    Raises:
        DatasetError: an unknown dataset, no `root` (or no folder there) for mnist / fashion-mnist, or a split that
            cannot be stratified.
        IDXFormatError: an IDX file is missing or malformed.
    """
    from sklearn.model_selection import train_test_split

    parts = load_arrays(config.dataset, root)
    if config.test_size is None:
        (train_x, train_y), (test_x, test_y) = parts
    else:
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        try:
            train_x, test_x, train_y, test_y = train_test_split(
                x, y, test_size=config.test_size, random_state=config.seed, stratify=y
            )
        except ValueError as error:
            raise DatasetError(
                f"cannot split {len(y)} {config.dataset} images with test_size={config.test_size}, stratified: {error}"
            ) from error
    return Split(
        torch.from_numpy(np.ascontiguousarray(train_x)),
        torch.from_numpy(np.ascontiguousarray(train_y)),
        torch.from_numpy(np.ascontiguousarray(test_x)),
        torch.from_numpy(np.ascontiguousarray(test_y)),
    )
