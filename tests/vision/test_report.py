"""The report's identity check is exact for every bias combination, and the report holds every number it names."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hooked_bilinear.vision import VisionConfig, train_classifier
from hooked_bilinear.vision.data import load_split
from hooked_bilinear.vision.overfitting import overfitting_stats
from hooked_bilinear.vision.report import classifier_report, identity_error
from tests.vision.vision_models import random_model


@pytest.mark.parametrize("bias,head_bias", [(False, False), (True, True)])
def test_identity_error_is_rounding_only(bias, head_bias):
    model = random_model(bias, head_bias).float()
    assert identity_error(model, torch.rand(20, 64)) < 1e-12


def test_identity_error_sees_a_wrong_Q(monkeypatch):
    model = random_model(False, True).float()
    monkeypatch.setattr(type(model), "augment", lambda self, e: torch.cat([e, torch.zeros_like(e[..., :1])], -1))
    assert identity_error(model, torch.rand(20, 64)) > 1e-3  # the head bias is lost: the check must notice


def test_report_numbers_and_figures(tmp_path):
    config = VisionConfig(d_model=8, d_hidden=8, epochs=2, lr=1e-2)
    model, _ = train_classifier(config, progress=False)
    noreg, _ = train_classifier(replace(config, noise_std=0.0), progress=False)
    result = classifier_report(model, tmp_path, noreg=noreg)
    assert set(result) >= {
        "test_accuracy",
        "identity_max_relative_error",
        "truncation",
        "adversarial",
        "overfitting",
        "noreg_test_accuracy",
    }
    assert list(result["truncation"]) == ["0", "1", "2", "3", "4", "6", "8"]
    assert result["truncation"]["8"] == result["test_accuracy"]  # all 8 components: the model itself
    # the noreg numbers are the noreg model's (computed here directly), not the model's
    split = load_split(config)
    with torch.no_grad():
        for name, m, x, y in (
            ("test_accuracy", model, split.test_x, split.test_y),
            ("noreg_test_accuracy", noreg, split.test_x, split.test_y),
        ):
            assert result[name] == pytest.approx((m(x).argmax(-1) == y).double().mean().item(), abs=1e-12)
    assert result["overfitting"]["noreg"] == overfitting_stats(noreg, split.train_x)._asdict()
    assert result["overfitting"]["model"] == overfitting_stats(model, split.train_x)._asdict()
    assert result["overfitting"]["model"] != result["overfitting"]["noreg"]
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "eigen_images.png",
        "eigen_images_noreg.png",
        "spectrum_class0.png",
        "truncation.png",
        "adversarial_curves.png",
        "adversarial_masks_eigen.png",
        "adversarial_masks_pinv.png",
        "explanation.png",
        "overfitting_outliers.png",
    }  # noise_sweep.png: with a sweep
    assert (tmp_path / "report.json").is_file()
