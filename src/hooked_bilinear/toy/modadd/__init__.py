"""Modular addition (a + b) mod p with a one-layer bilinear transformer: train, read, compress, certify.

task.py         the task, its inputs and split, the config record     (ModAddTask, NANDA, PIZZA)
train.py        full-batch AdamW training in stages, saving            (train_recipe, ModAddTrainConfig, save_model)
fourier.py      the Fourier basis of Z_p, spectra, key frequencies
circuit.py      the logits as an exact sum of terms, from the weights
interval.py     rounding-safe interval arithmetic with a flop ledger
certify.py      the certificate: proven margin bounds, their cost      (certify, certify_exact, certificate_curve)
explanation.py  trig identities and the compressed explanation         (explain, weight_reading)
quadrature.py   a ReLU model (mlp="relu") read as numerical integration, its bounds (certify_relu)
windows.py      the ReLU model's sign-pattern bound: predicted firing windows, kinks (certify_relu's default)
report.py       the headline numbers                                   (report)
plots.py        pictures
"""

from hooked_bilinear.toy.modadd.certify import (
    Certificate,
    brute_force_flops,
    certificate_curve,
    certify,
    certify_exact,
)
from hooked_bilinear.toy.modadd.explanation import (
    Explanation,
    activation_spectra,
    explain,
    logit_table_fraction,
    weight_reading,
)
from hooked_bilinear.toy.modadd.fourier import fourier_basis, key_frequencies
from hooked_bilinear.toy.modadd.quadrature import QuadratureCertificate, certify_relu, explanation_table
from hooked_bilinear.toy.modadd.report import all_logits, margins, modadd_report
from hooked_bilinear.toy.modadd.task import NANDA, PIZZA, ModAddTask
from hooked_bilinear.toy.modadd.train import (
    SETUP_TRAINING,
    ModAddHistory,
    ModAddTrainConfig,
    Recipe,
    save_model,
    train_modadd,
    train_recipe,
)

__all__ = [
    "NANDA",
    "PIZZA",
    "SETUP_TRAINING",
    "Certificate",
    "Explanation",
    "QuadratureCertificate",
    "ModAddHistory",
    "ModAddTask",
    "ModAddTrainConfig",
    "Recipe",
    "activation_spectra",
    "all_logits",
    "brute_force_flops",
    "certificate_curve",
    "certify",
    "certify_relu",
    "certify_exact",
    "explain",
    "explanation_table",
    "fourier_basis",
    "key_frequencies",
    "logit_table_fraction",
    "margins",
    "weight_reading",
    "modadd_report",
    "save_model",
    "train_modadd",
    "train_recipe",
]
