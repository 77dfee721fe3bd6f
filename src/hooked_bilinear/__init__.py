"""hooked-bilinear: bilinear-MLP language models as TransformerLens 4 hooked transformers.

Public API:
    from_pretrained(name_or_path, ...) -> TransformerBridge
    load_model(name_or_path, ...)      the plain transformers model (BilinearForCausalLM or LlamaForCausalLM)
    shipped_checkpoints() -> list of short names loadable without a download
    HookedBilinearMLP                  the bilinear MLP component
    BilinearConfig, BilinearForCausalLM  the transformers model class of the tdooms formats
    detect_format(config_dict)         "current" or "legacy"
    analysis                           weight-space analyses (also methods of HookedBilinearMLP)
    sae                                sparse autoencoders: TopK/ReLU/JumpReLU, SAELens disk format, training, splicing
    vision                             bilinear image classifiers read from their weights (eigen-images, masks, ...)
    to_llama(model_or_path)            a current-format tdooms model as a stock LlamaForCausalLM
    save_pretrained(model, folder)     a bridge / model / checkpoint name -> a Hub-ready folder (weights, config,
                                       its tokenizer, model card; tdooms in stock Llama form), atomically
    push_to_hub(model, repo_id)        the same folder uploaded to the Hugging Face Hub
    bilinearize(model, data, ...)      fine-tune a SwiGLU Llama into a bilinear one (annealed gate; torchrun)
    Corpus(source, text_column=...)    a text dataset for bilinearize (local files, or a Hub name streamed)
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING


def _starting_command_line() -> bool:
    """Whether this import starts the `hooked-bilinear` command (its console script, or `python -m hooked_bilinear`,
    which torchrun runs) before the command has parsed its arguments. The command then imports the API below itself,
    after parsing (`hooked_bilinear.cli.main`), so that `--help` and usage errors answer without importing torch."""
    if globals().get("_arguments_parsed", False):
        return False
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    if script in ("hooked-bilinear", "hooked-bilinear.exe", "hooked-bilinear-script.py"):
        return True
    if script != "-m" or len(sys.argv) > len(sys.orig_argv):  # while runpy imports a package for `python -m`
        return False
    token = sys.orig_argv[-len(sys.argv)]  # what followed -m (`-m NAME` or `-mNAME`)
    module = token[2:] if token.startswith("-m") and token != "-m" else token
    return module in ("hooked_bilinear", "hooked_bilinear.__main__")


if TYPE_CHECKING or not _starting_command_line():
    from hooked_bilinear import analysis, publishing, sae, vision
    from hooked_bilinear.components.hooked_bilinear_mlp import HookedBilinearMLP
    from hooked_bilinear.errors import (
        CheckpointFormatError,
        CheckpointNotFoundError,
        CheckpointWeightsError,
        ConversionError,
        DashboardError,
        DatasetError,
        HookedBilinearError,
        NotBilinearError,
        PublishError,
        SAEError,
        WriteError,
    )
    from hooked_bilinear.loading.adapter import (
        BilinearArchitectureAdapter,
        register_adapter,
    )
    from hooked_bilinear.loading.pretrained import from_pretrained, load_model, shipped_checkpoints
    from hooked_bilinear.making.bilinearize import bilinearize
    from hooked_bilinear.making.corpus import Corpus
    from hooked_bilinear.making.train import TrainConfig
    from hooked_bilinear.modeling.configuration import BilinearConfig, detect_format
    from hooked_bilinear.modeling.modeling import BilinearForCausalLM
    from hooked_bilinear.modeling.registration import register_auto_classes
    from hooked_bilinear.publishing.hub import push_to_hub
    from hooked_bilinear.publishing.save import save_pretrained
    from hooked_bilinear.publishing.to_llama import to_llama

    register_auto_classes()
    register_adapter()

__all__ = [
    "BilinearArchitectureAdapter",
    "BilinearConfig",
    "BilinearForCausalLM",
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "CheckpointWeightsError",
    "Corpus",
    "ConversionError",
    "DashboardError",
    "DatasetError",
    "HookedBilinearError",
    "HookedBilinearMLP",
    "NotBilinearError",
    "PublishError",
    "SAEError",
    "WriteError",
    "detect_format",
    "from_pretrained",
    "load_model",
    "analysis",
    "sae",
    "vision",
    "bilinearize",
    "register_adapter",
    "publishing",
    "push_to_hub",
    "save_pretrained",
    "shipped_checkpoints",
    "to_llama",
    "TrainConfig",
]
