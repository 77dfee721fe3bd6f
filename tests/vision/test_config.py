"""VisionConfig: validation, and the config.json round trip."""

from __future__ import annotations

import pytest

from hooked_bilinear.errors import CheckpointFormatError
from hooked_bilinear.vision import VisionConfig


def test_round_trip(tmp_path):
    config = VisionConfig(dataset="mnist", d_model=32, test_size=None, noise_std=0.0, seed=3)
    config.save(tmp_path / "c.json")
    assert VisionConfig.load(tmp_path / "c.json") == config
    assert (config.n_pixels, config.image_shape, config.n_classes) == (784, (28, 28), 10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dataset": "cifar"}, "dataset must be one of"),
        ({"d_model": 0}, "d_model must be a positive integer"),
        ({"test_size": 1.0}, "test_size must lie strictly between 0 and 1"),
        ({"test_size": None}, "only for mnist"),
        ({"noise_std": -0.1}, "noise_std must be a non-negative number"),
        ({"lr": 0.0}, "lr must be positive"),
    ],
)
def test_bad_values_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VisionConfig(**kwargs)


def test_foreign_or_bad_json_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"dataset": "digits"}')
    with pytest.raises(CheckpointFormatError, match="model_type"):
        VisionConfig.load(path)
    path.write_text('{"model_type": "hooked_bilinear_vision", "d_model": -1}')
    with pytest.raises(CheckpointFormatError, match="d_model"):
        VisionConfig.load(path)
    path.write_text("{")
    with pytest.raises(CheckpointFormatError, match="not valid JSON"):
        VisionConfig.load(path)
