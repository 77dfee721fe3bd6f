"""Training: deterministic, learns, the noise regulariser acts, TRAINING.json records the run."""

from __future__ import annotations

import json

import torch

from hooked_bilinear.vision import VisionConfig, load_split, save_trained, train_classifier
from hooked_bilinear.vision.model import BilinearClassifier

SMALL = VisionConfig(d_model=16, d_hidden=16, epochs=4, batch_size=32, lr=1e-2, noise_std=0.2)


def test_training_is_deterministic_and_learns():
    split = load_split(SMALL)
    a, history = train_classifier(SMALL, split, progress=False)
    b, _ = train_classifier(SMALL, split, progress=False)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert len(history.test_accuracy) == 4 and history.test_accuracy[-1] > 0.6  # chance is 0.1
    assert history.train_loss[-1] < history.train_loss[0]


def test_noise_and_seed_change_the_weights():
    split = load_split(SMALL)
    base, _ = train_classifier(SMALL, split, progress=False)
    for change in ({"noise_std": 0.0}, {"seed": 1}):
        config = VisionConfig(**{**SMALL.__dict__, **change})
        other, _ = train_classifier(config, split, progress=False)
        assert not torch.equal(other.embed.weight, base.embed.weight), change


def test_saved_training_record(tmp_path):
    model, history = train_classifier(SMALL, progress=False)
    folder = save_trained(model, tmp_path / "m", history)
    record = json.loads((folder / "TRAINING.json").read_text())
    assert record["epochs"] == 4 and record["test_accuracy"] == history.test_accuracy[-1]
    assert BilinearClassifier.load(folder).config == SMALL


def test_trains_on_mnist_idx_files(tmp_path):
    from tests.vision.test_data import write_mnist

    write_mnist(tmp_path, n_train=30, n_test=20)
    config = VisionConfig(dataset="mnist", test_size=None, d_model=8, d_hidden=8, epochs=1, batch_size=16)
    model, history = train_classifier(config, root=tmp_path, progress=False)
    assert model.config.n_pixels == 784 and model.W_E.shape == (8, 784)
    assert len(history.test_accuracy) == 1
    folder = save_trained(model, tmp_path / "m", history)
    assert BilinearClassifier.load(folder).config.dataset == "mnist"
