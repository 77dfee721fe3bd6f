"""The record of one image classifier: data, split, shape and training settings (saved as config.json)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hooked_bilinear.errors import CheckpointFormatError

#: Datasets and their image shapes: scikit-learn's 8x8 digits (shipped inside scikit-learn), and MNIST /
#: Fashion-MNIST from local IDX files (see `data.py`).
DATASETS: dict[str, tuple[int, int]] = {"digits": (8, 8), "mnist": (28, 28), "fashion-mnist": (28, 28)}
"""The datasets a classifier trains on, each with its image size (height, width)."""


@dataclass(frozen=True)
class VisionConfig:
    """pixels [n_pixels] -> embedding e = W_E x [d_model] -> (W_gate e) * (W_in e) [d_hidden] -> head [n_classes].

    Training defaults follow the papers: AdamW (lr 1e-3, weight decay 0.5), a cosine schedule to zero, Gaussian
    input noise of std `noise_std` added to every training batch (0 turns the regularisation off). `test_size` is
    the held-out fraction of `train_test_split(..., stratify=y, random_state=seed)`; None means the dataset's own
    train / test files (MNIST, Fashion-MNIST only).
    """

    dataset: str = "digits"
    d_model: int = 64
    d_hidden: int = 64
    bias: bool = False
    head_bias: bool = False
    test_size: float | None = 0.2
    seed: int = 0
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.5
    noise_std: float = 0.3

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}.")
        for name in ("d_model", "d_hidden", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.test_size is None and self.dataset == "digits":
            raise ValueError(
                "test_size=None (the dataset's own test files) exists only for mnist / fashion-mnist; "
                "digits needs a held-out fraction such as 0.2."
            )
        if self.test_size is not None and not 0.0 < self.test_size < 1.0:
            raise ValueError(f"test_size must lie strictly between 0 and 1 (or be None), got {self.test_size!r}.")
        for name in ("lr", "weight_decay", "noise_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
        if self.lr == 0:
            raise ValueError("lr must be positive.")

    @property
    def image_shape(self) -> tuple[int, int]:
        return DATASETS[self.dataset]

    @property
    def n_pixels(self) -> int:
        height, width = self.image_shape
        return height * width

    @property
    def n_classes(self) -> int:
        return 10

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "hooked_bilinear_vision", **asdict(self)}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> VisionConfig:
        record = dict(record)
        if record.pop("model_type", None) != "hooked_bilinear_vision":
            raise CheckpointFormatError(
                "config.json is not a hooked_bilinear.vision classifier's (model_type must be "
                "'hooked_bilinear_vision'); save one with model.save(folder)."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise CheckpointFormatError(f"config.json has unknown keys {unknown}; known keys: {sorted(known)}.")
        try:
            return cls(**record)
        except (TypeError, ValueError) as error:
            raise CheckpointFormatError(f"config.json: {error}") from error

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> VisionConfig:
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise CheckpointFormatError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(record, dict):
            raise CheckpointFormatError(f"{path} must hold a JSON object.")
        return cls.from_dict(record)
