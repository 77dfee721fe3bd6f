"""Training with the papers' settings: AdamW, cosine schedule to zero, Gaussian input noise; seeded, deterministic."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from tqdm.auto import tqdm

from hooked_bilinear.vision.config import VisionConfig
from hooked_bilinear.vision.data import Split, load_split
from hooked_bilinear.vision.model import BilinearClassifier

TRAINING_FILE = "TRAINING.json"


@dataclass
class TrainingHistory:
    """Per epoch: mean training loss (on the noisy batches), clean train and test accuracy."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


@jaxtyped(typechecker=beartype)
def accuracy(
    model: BilinearClassifier, pixels: Float[torch.Tensor, "n n_pixels"], labels: Int[torch.Tensor, " n"]
) -> float:
    """Share of `pixels` whose argmax logit is the label.

    Args:
        model: the classifier.
        pixels: flat images [n, n_pixels].
        labels: their labels [n], each in 0..n_classes - 1.

    Returns:
        The accuracy, a float in [0, 1] (nan when there are no images).

    Raises:
        ValueError: a label lies outside the model's classes.
    """
    n_classes = model.config.n_classes
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in 0..{n_classes - 1} (the model's classes); got {labels.min().item()} to "
            f"{labels.max().item()}."
        )
    with torch.no_grad():
        return (model(pixels).argmax(-1) == labels).double().mean().item()


def build_classifier(config: VisionConfig) -> BilinearClassifier:
    """A freshly initialised classifier (PyTorch's default init, seeded by config.seed; global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return BilinearClassifier(config)


@beartype
def train_classifier(
    config: VisionConfig, split: Split | None = None, *, root: str | Path | None = None, progress: bool = True
) -> tuple[BilinearClassifier, TrainingHistory]:
    """Train a classifier as `config` says, on `split` (default: `load_split(config, root)`).

    Each step adds N(0, noise_std^2) noise to the batch's pixels (not clipped: the papers' regulariser). The same
    config and split give the same weights on a given machine: init, shuffling and noise are seeded.

    Args:
        config: the model's sizes and the training settings (epochs, batch_size, lr, weight_decay, noise_std, seed).
        split: the train / test split (default: `load_split(config, root)`).
        root: the folder of the IDX files, for mnist / fashion-mnist when no split is given (default None).
        progress: show a progress bar over the epochs (default True).

    Returns:
        (model, history): the trained `BilinearClassifier` in eval mode, and its `TrainingHistory` (per epoch: mean
        training loss, train and test accuracy; the seconds taken).

    Raises:
        DatasetError: no split is given and the dataset cannot be loaded (see `load_split`).
    """
    if split is None:
        split = load_split(config, root)
    model = build_classifier(config).train()
    generator = torch.Generator().manual_seed(config.seed)
    n = len(split.train_y)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = config.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / total, 1))))
    history = TrainingHistory()
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"train {config.dataset}", disable=not progress)
    for _ in bar:
        order = torch.randperm(n, generator=generator)
        losses = []
        for i in range(steps_per_epoch):
            rows = order[i * config.batch_size : (i + 1) * config.batch_size]
            x = split.train_x[rows]
            if config.noise_std > 0:
                x = x + config.noise_std * torch.randn(x.shape, generator=generator)
            loss = F.cross_entropy(model(x), split.train_y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        model.eval()
        history.train_loss.append(sum(losses) / len(losses))
        history.train_accuracy.append(accuracy(model, split.train_x, split.train_y))
        history.test_accuracy.append(accuracy(model, split.test_x, split.test_y))
        model.train()
        bar.set_postfix(
            loss=f"{history.train_loss[-1]:.3f}",
            train_acc=f"{history.train_accuracy[-1]:.3f}",
            test_acc=f"{history.test_accuracy[-1]:.4f}",
        )
    history.seconds = time.perf_counter() - start
    return model.eval(), history


@beartype
def save_trained(model: BilinearClassifier, folder: str | Path, history: TrainingHistory) -> Path:
    """`model.save(folder)` plus TRAINING.json: the final losses and accuracies, epochs and seconds.

    Args:
        model: the trained classifier.
        folder: the folder to write (`BilinearClassifier.save`).
        history: its training history (`train_classifier`).

    Returns:
        The folder's path.
    """
    folder = model.save(folder)
    record = {
        "epochs": len(history.train_loss),
        "seconds": round(history.seconds, 1),
        "train_loss": history.train_loss[-1],
        "train_accuracy": history.train_accuracy[-1],
        "test_accuracy": history.test_accuracy[-1],
    }
    (folder / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return folder
