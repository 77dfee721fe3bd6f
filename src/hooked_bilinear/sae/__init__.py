"""Sparse autoencoders (SAEs) without SAELens: TopK (the papers'), ReLU and JumpReLU, read and written in SAELens's
on-disk format, trained on activations cached from a bridge hook, and spliced into a bridge.

    from hooked_bilinear import sae
    s = sae.load("ts-synthetic-2l/blocks.1.mlp.hook_in")   # shipped; or a folder; or a Hub id; or an SAELens SAE
    f = s.encode(x); x_hat = s.decode(f)                   # W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec
    with sae.splice(model, s): model(tokens)               # the reconstruction spliced in at s.hook_name
"""

from hooked_bilinear.sae.base import SAE
from hooked_bilinear.sae.format import from_object, load_folder, save
from hooked_bilinear.sae.jumprelu import JumpReLUSAE
from hooked_bilinear.sae.pretrained import load, shipped
from hooked_bilinear.sae.relu import ReLUSAE
from hooked_bilinear.sae.splice import SpliceLoss, splice, splice_loss
from hooked_bilinear.sae.topk import TopKSAE
from hooked_bilinear.sae.train import (
    SAEStats,
    SAETrainConfig,
    cache_activations,
    evaluate_sae,
    pack_texts,
    train_sae,
    train_saes,
)

__all__ = [
    "SAE",
    "JumpReLUSAE",
    "ReLUSAE",
    "SAEStats",
    "SAETrainConfig",
    "SpliceLoss",
    "TopKSAE",
    "cache_activations",
    "evaluate_sae",
    "from_object",
    "load",
    "load_folder",
    "pack_texts",
    "save",
    "shipped",
    "splice",
    "splice_loss",
    "train_sae",
    "train_saes",
]
