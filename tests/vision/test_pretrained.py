"""The shipped classifiers load offline and reach their recorded accuracy on their split."""

from __future__ import annotations

import json

import pytest
import torch

from hooked_bilinear.vision import (
    SHIPPED_CONFIGS,
    accuracy,
    from_pretrained,
    load_split,
    shipped_classifiers,
)
from hooked_bilinear.vision.pretrained import CHECKPOINTS


@pytest.mark.parametrize("name", ["digits", "digits-noreg"])
def test_shipped_model_matches_its_record(name):
    model = from_pretrained(name)
    assert model.config == SHIPPED_CONFIGS[name]
    assert (model.config.dataset, model.config.test_size, model.config.seed) == ("digits", 0.2, 0)
    split = load_split(model.config)
    record = json.loads((CHECKPOINTS / name / "TRAINING.json").read_text())
    assert accuracy(model, split.test_x, split.test_y) == pytest.approx(record["test_accuracy"], abs=1e-12)
    assert (CHECKPOINTS / name / "model.safetensors").stat().st_size < 200_000


def test_digits_reaches_97_percent_and_noreg_differs():
    split = load_split(SHIPPED_CONFIGS["digits"])
    assert accuracy(from_pretrained("digits"), split.test_x, split.test_y) >= 0.97
    assert SHIPPED_CONFIGS["digits-noreg"].noise_std == 0 < SHIPPED_CONFIGS["digits"].noise_std
    assert shipped_classifiers() == ["digits", "digits-noreg"]


def test_model_takes_a_batch_of_flat_pixels():
    model = from_pretrained("digits")
    assert model(torch.rand(5, 64)).shape == (5, 10)


def test_image_classifiers_are_not_listed_as_language_models():
    import hooked_bilinear as hb

    assert not {"digits", "digits-noreg", "vision"} & set(hb.shipped_checkpoints())
    assert hb.vision.from_pretrained("digits").config.dataset == "digits"
