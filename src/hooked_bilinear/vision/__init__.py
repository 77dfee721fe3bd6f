"""Bilinear image classifiers read from their weights (the papers' section 4): a case study beside the core.

    config.py        VisionConfig: dataset, split, shape and training settings (config.json)
    model.py         BilinearClassifier: a hooked pixels -> embed -> bilinear -> head model; its `mlp` has the
                     analysis methods of hooked_bilinear.analysis; class_directions, class_matrices
    data.py          load_split: scikit-learn digits, MNIST / Fashion-MNIST from local IDX files (read_idx)
    train.py         train: AdamW, cosine schedule, input noise, seeded; save_trained
    pretrained.py    from_pretrained("digits" | "digits-noreg" | folder), SHIPPED_CONFIGS
"""

from hooked_bilinear.vision.config import DATASETS, VisionConfig
from hooked_bilinear.vision.data import IDXFormatError, Split, load_split, read_idx
from hooked_bilinear.vision.model import BilinearClassifier, BilinearLayer
from hooked_bilinear.vision.pretrained import SHIPPED_CONFIGS, from_pretrained, shipped_classifiers
from hooked_bilinear.vision.train import TrainingHistory, accuracy, save_trained, train

__all__ = ["DATASETS", "SHIPPED_CONFIGS", "BilinearClassifier", "BilinearLayer", "IDXFormatError", "Split",
           "TrainingHistory", "VisionConfig", "accuracy", "from_pretrained", "load_split", "read_idx",
           "save_trained", "shipped_classifiers", "train"]
