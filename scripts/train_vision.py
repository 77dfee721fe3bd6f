"""Train the shipped image classifiers `digits` and `digits-noreg` into src/hooked_bilinear/checkpoints/vision/.

    python scripts/train_vision.py [--out src/hooked_bilinear/checkpoints/vision]

Settings: `hooked_bilinear.vision.pretrained.SHIPPED_CONFIGS` (about 20 s each on one CPU core). Deterministic:
running it again writes the same weights on the same machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hooked_bilinear.vision.pretrained import CHECKPOINTS, SHIPPED_CONFIGS
from hooked_bilinear.vision.train import save_trained, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINTS)
    args = parser.parse_args()
    for name, config in SHIPPED_CONFIGS.items():
        model, history = train_classifier(config)
        save_trained(model, args.out / name, history)
        print(
            f"{name}: train accuracy {history.train_accuracy[-1]:.4f}, test accuracy {history.test_accuracy[-1]:.4f}"
            f" ({history.seconds:.0f} s) -> {args.out / name}"
        )


if __name__ == "__main__":
    main()
