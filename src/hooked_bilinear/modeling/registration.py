"""Registration of BilinearConfig / BilinearForCausalLM with transformers' Auto classes."""

from transformers import AutoConfig, AutoModelForCausalLM

from hooked_bilinear.modeling.configuration import MODEL_TYPE, BilinearConfig
from hooked_bilinear.modeling.modeling import BilinearForCausalLM


def register_auto_classes() -> None:
    """`AutoConfig` / `AutoModelForCausalLM` resolve model_type "tdooms_bilinear" to this package (idempotent)."""
    AutoConfig.register(MODEL_TYPE, BilinearConfig, exist_ok=True)
    AutoModelForCausalLM.register(BilinearConfig, BilinearForCausalLM, exist_ok=True)
