"""The shipped classifiers (trained by scripts/train_vision.py) and `from_pretrained`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from beartype import beartype

from hooked_bilinear.errors import CheckpointNotFoundError
from hooked_bilinear.loading.shipped import loader_hint
from hooked_bilinear.vision.config import VisionConfig
from hooked_bilinear.vision.model import BilinearClassifier

#: Inside the package, apart from the language models (`hooked_bilinear.shipped_checkpoints()` lists those only).
CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints" / "vision"

_DIGITS = VisionConfig(dataset="digits", d_model=64, d_hidden=128, epochs=300, lr=3e-3, noise_std=0.2)
SHIPPED_CONFIGS: dict[str, VisionConfig] = {"digits": _DIGITS, "digits-noreg": replace(_DIGITS, noise_std=0.0)}
"""The settings of the shipped models (scripts/train_vision.py trains them): 64 pixels -> 64 -> bilinear 128 -> 10,
300 epochs of AdamW at lr 3e-3 (1e-3 reaches 96.7% here), weight decay 0.5, batch 64, 20% of the 1797 digits held
out; `digits` with input noise of std 0.2, `digits-noreg` without."""


@beartype
def shipped_classifiers() -> list[str]:
    """Names `from_pretrained` loads from inside the package.

    Returns:
        The names in `SHIPPED_CONFIGS` whose checkpoint is inside the package, sorted.
    """
    return sorted(name for name in SHIPPED_CONFIGS if (CHECKPOINTS / name / "config.json").is_file())


@beartype
def from_pretrained(name: str | Path) -> BilinearClassifier:
    """A shipped classifier by name (`digits`, `digits-noreg`) or a folder written by `BilinearClassifier.save`.

    Args:
        name: a shipped name (`shipped_classifiers()`), or a folder written by `BilinearClassifier.save` /
            `hooked-bilinear vision train`.

    Returns:
        The `BilinearClassifier` (a TransformerLens hooked module), in eval mode.

    Raises:
        CheckpointNotFoundError: `name` is neither a shipped classifier nor a folder.

    Examples:
        >>> from hooked_bilinear import vision
        >>> model = vision.from_pretrained("digits")
        >>> split = vision.load_split(model.config)
        >>> round((model(split.test_x).argmax(-1) == split.test_y).float().mean().item(), 4)
        0.9861
    """
    folder = Path(name)
    if isinstance(name, str) and name in SHIPPED_CONFIGS:
        folder = CHECKPOINTS / name
    elif not folder.is_dir():
        raise CheckpointNotFoundError(
            f"{loader_hint(str(name), 'image classifier')}{name!r} is neither a shipped classifier ({', '.join(sorted(SHIPPED_CONFIGS))}) "
            "nor a folder written by BilinearClassifier.save / hooked-bilinear vision train."
        )
    return BilinearClassifier.load(folder)
