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

from hooked_bilinear import analysis, publishing, sae, vision
from hooked_bilinear.components.hooked_bilinear_mlp import HookedBilinearMLP
from hooked_bilinear.errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    CheckpointWeightsError,
    ConversionError,
    DatasetError,
    HookedBilinearError,
    NotBilinearError,
    PublishError,
    SAEError,
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
    "DatasetError",
    "HookedBilinearError",
    "HookedBilinearMLP",
    "NotBilinearError",
    "PublishError",
    "SAEError",
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
