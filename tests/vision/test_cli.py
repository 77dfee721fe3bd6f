"""`hooked-bilinear vision train / report`: a tiny run end to end, and one-line errors naming the flags."""

from __future__ import annotations

import json

from hooked_bilinear.cli import main
from hooked_bilinear.vision import BilinearClassifier


def test_train_then_report(tmp_path, capsys):
    folder = tmp_path / "tiny"
    assert (
        main(
            [
                "vision",
                "train",
                str(folder),
                "--epochs",
                "2",
                "--d-model",
                "8",
                "--d-hidden",
                "8",
                "--noise-std",
                "0.1",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    model = BilinearClassifier.load(folder)
    assert (model.config.d_model, model.config.noise_std, model.config.seed, model.config.epochs) == (8, 0.1, 3, 2)
    assert "test accuracy" in capsys.readouterr().out
    assert (
        main(
            [
                "vision",
                "report",
                "--model",
                str(folder),
                "--noreg",
                "none",
                "--out",
                str(tmp_path / "r"),
                "--seeds",
                "4",
                "--widths",
                "12",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["identity_max_relative_error"] < 1e-10 and "noreg" not in result["overfitting"]
    assert len(result["seed_similarity_top4"]["4"]) == len(result["width_similarity_top4"]["12"]) == 4
    assert {p.name for p in (tmp_path / "r").glob("*.png")} >= {
        "eigen_images.png",
        "truncation.png",
        "adversarial_curves.png",
        "explanation.png",
    }


def test_preset_is_the_shipped_settings(tmp_path):
    assert main(["vision", "train", str(tmp_path / "p"), "--preset", "digits-noreg", "--epochs", "1"]) == 0
    config = BilinearClassifier.load(tmp_path / "p").config
    assert (config.d_hidden, config.noise_std, config.lr, config.epochs) == (128, 0.0, 3e-3, 1)


def test_errors_name_the_flags(tmp_path, capsys):
    assert main(["vision", "train", str(tmp_path / "a"), "--noise-std", "-1"]) == 1
    assert "--noise-std" in capsys.readouterr().err
    assert main(["vision", "train", str(tmp_path / "a"), "--test-size", "x"]) == 1
    assert "--test-size" in capsys.readouterr().err
    assert main(["vision", "train", str(tmp_path / "a"), "--dataset", "mnist"]) == 1
    assert "--data-root" in capsys.readouterr().err
    assert main(["vision", "train", str(tmp_path), "--epochs", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["vision", "report", "--model", "nope"]) == 1
    assert "neither a shipped" in capsys.readouterr().err
    assert main(["vision", "report", "--sweep", "0,a", "--out", str(tmp_path / "r")]) == 1
    assert "--sweep" in capsys.readouterr().err
