"""The usual entry points load tdooms folders exactly once hooked_bilinear is imported: transformers' Auto classes,
TransformerLens's own `TransformerBridge.boot_transformers` and nnsight's `LanguageModel` on folders this package ships
or writes; `load_model` and `BilinearForCausalLM.from_pretrained` on folders dumped by the authors' code."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM, AutoTokenizer

import hooked_bilinear as hb
from tests.reference import EMBEDDED, make_config, reference_logits, variants, write_checkpoint

SHIPPED = Path(hb.__file__).parent / "checkpoints" / EMBEDDED
TEXT = "once upon a time , there was a little cat named tom ."


@pytest.fixture(scope="module")
def expected() -> tuple[torch.Tensor, torch.Tensor]:
    bridge = hb.from_pretrained(EMBEDDED)
    tokens = bridge.to_tokens(TEXT)
    with torch.no_grad():
        return tokens, bridge(tokens)


@pytest.mark.smoke
def test_auto_model_for_causal_lm_loads_the_shipped_folder(expected):
    tokens, logits = expected
    model = AutoModelForCausalLM.from_pretrained(str(SHIPPED)).eval()
    assert isinstance(model, hb.BilinearForCausalLM)
    with torch.no_grad():
        assert (model(tokens).logits - logits).abs().max().item() <= 1e-5


@pytest.mark.smoke
@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
def test_boot_transformers_loads_the_shipped_folder_with_hooked_bilinear_mlps(expected, compatibility_mode):
    tokens, logits = expected
    bridge = TransformerBridge.boot_transformers(str(SHIPPED), device="cpu")
    if compatibility_mode:
        bridge.enable_compatibility_mode(center_unembed=False)
    assert all(isinstance(block.mlp, hb.HookedBilinearMLP) for block in bridge.blocks)
    assert bridge.to_tokens(TEXT).tolist() == tokens.tolist()
    with torch.no_grad():
        assert (bridge(tokens) - logits).abs().max().item() <= 1e-5


@pytest.mark.smoke
def test_nnsight_language_model_loads_the_shipped_folder(expected):
    nnsight = pytest.importorskip("nnsight")
    tokens, logits = expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnsight 0.8 marks LanguageModel deprecated in favour of TransformersModel
        model = nnsight.LanguageModel(str(SHIPPED), device_map="cpu", dispatch=True)
    with model.trace(tokens):
        output = model.output.save()
    assert (output.logits - logits).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name,config", variants(), ids=[name for name, _ in variants()])
def test_authors_folder_loads_through_load_model_and_the_model_class(tmp_path, name, config, tokens):
    state = write_checkpoint(tmp_path / name, config)
    expected = reference_logits(state, config, tokens)
    with torch.no_grad():
        for model in (hb.load_model(tmp_path / name), hb.BilinearForCausalLM.from_pretrained(str(tmp_path / name))):
            assert (model.eval()(tokens).logits - expected).abs().max().item() <= 1e-5


def test_auto_classes_refuse_an_authors_folder_and_a_resave_fixes_it(tmp_path, tokens):
    # transformers' own dispatch needs a model_type; hooked_bilinear does not hijack it for configs without one.
    config = make_config("current")
    state = write_checkpoint(tmp_path / "authors", config)
    with pytest.raises(ValueError, match="model type ``"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path / "authors"))
    hb.load_model(tmp_path / "authors").save_pretrained(tmp_path / "resaved")
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(str(tmp_path / "resaved"))(tokens).logits
    assert (logits - reference_logits(state, config, tokens)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["current-bilinear-bias", "current-glu-silu", "current-mlp", "legacy-glu-relu"])
def test_boot_transformers_reads_the_format_of_a_package_written_folder(tmp_path, name, tokens):
    config = dict(variants())[name]
    state = write_checkpoint(tmp_path / "authors", config)
    hb.load_model(tmp_path / "authors").save_pretrained(tmp_path / "saved")
    AutoTokenizer.from_pretrained(str(SHIPPED)).save_pretrained(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(str(tmp_path / "saved"), device="cpu")
    with torch.no_grad():
        assert (bridge(tokens) - reference_logits(state, config, tokens)).abs().max().item() <= 1e-5
