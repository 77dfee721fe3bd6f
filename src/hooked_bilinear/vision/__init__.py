"""Bilinear image classifiers read from their weights (the papers' section 4): a case study beside the core.

config.py        VisionConfig: dataset, split, shape and training settings (config.json)
model.py         BilinearClassifier: a hooked pixels -> embed -> bilinear -> head model; its `mlp` has the
                 analysis methods of hooked_bilinear.analysis; class_directions, class_matrices
data.py          load_split: scikit-learn digits, MNIST / Fashion-MNIST from local IDX files (read_idx)
train.py         train: AdamW, cosine schedule, input noise, seeded; save_trained
pretrained.py    from_pretrained("digits" | "digits-noreg" | folder), SHIPPED_CONFIGS
eigenimages.py   eigen_images: per-class eigenvectors in pixel space
truncation.py    truncation_accuracy: accuracy keeping the top-k eigencomponents per class
adversarial.py   adversarial_mask (eigen / pinv), mask_curve against a permuted-pixel baseline
overfitting.py   overfitting_stats (outlier energy, effective rank), noise_sweep
explain.py       explain_input: lambda (v . e)^2 contributions for one image
similarity.py    eigen_image_similarity across models (seeds, widths)
plots.py         the PNGs;  report.py: every analysis on a model and its unregularised twin
"""

from hooked_bilinear.vision.adversarial import (
    MaskCurve,
    adversarial_mask,
    apply_mask,
    mask_curve,
)
from hooked_bilinear.vision.config import DATASETS, VisionConfig
from hooked_bilinear.vision.data import IDXFormatError, Split, load_split, read_idx
from hooked_bilinear.vision.eigenimages import EigenImages, eigen_images
from hooked_bilinear.vision.explain import InputExplanation, explain_input
from hooked_bilinear.vision.model import BilinearClassifier, BilinearLayer
from hooked_bilinear.vision.overfitting import (
    NoiseSweep,
    OverfittingStats,
    noise_sweep,
    overfitting_stats,
)
from hooked_bilinear.vision.pretrained import (
    SHIPPED_CONFIGS,
    from_pretrained,
    shipped_classifiers,
)
from hooked_bilinear.vision.similarity import eigen_image_similarity
from hooked_bilinear.vision.train import TrainingHistory, accuracy, save_trained, train_classifier
from hooked_bilinear.vision.truncation import (
    TruncationAccuracy,
    truncated_logits,
    truncation_accuracy,
)

__all__ = [
    "DATASETS",
    "SHIPPED_CONFIGS",
    "BilinearClassifier",
    "BilinearLayer",
    "EigenImages",
    "IDXFormatError",
    "InputExplanation",
    "MaskCurve",
    "NoiseSweep",
    "OverfittingStats",
    "Split",
    "TrainingHistory",
    "TruncationAccuracy",
    "VisionConfig",
    "accuracy",
    "adversarial_mask",
    "apply_mask",
    "eigen_image_similarity",
    "eigen_images",
    "explain_input",
    "from_pretrained",
    "load_split",
    "mask_curve",
    "noise_sweep",
    "overfitting_stats",
    "read_idx",
    "save_trained",
    "shipped_classifiers",
    "train_classifier",
    "truncated_logits",
    "truncation_accuracy",
]
