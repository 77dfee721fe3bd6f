"""to_llama: current-format tdooms checkpoints become stock LlamaForCausalLMs with the same logits; formats without a
Llama form are refused with the reason."""

from __future__ import annotations

import copy
import inspect
import re
import types

import pytest
import torch
import transformers
from transformers import LlamaForCausalLM

import hooked_bilinear as hb
from hooked_bilinear.cli import main
from hooked_bilinear.publishing.model_card import model_card
from tests.llama import write_llama
from tests.reference import EMBEDDED, make_config, reference_logits, write_checkpoint


@pytest.mark.parametrize(
    "overrides",
    [{}, {"bias": True}, {"gate": "silu"}, {"gate": "gelu", "n_layer": 3}],
    ids=["bilinear", "bias", "glu-silu", "glu-gelu-3l"],
)
def test_to_llama_matches_independent_reference(tmp_path, overrides):
    config = make_config("current", **overrides)
    state = write_checkpoint(tmp_path, config, vocab=50)
    llama = hb.to_llama(tmp_path)
    assert type(llama).__name__ == "LlamaForCausalLM"
    assert llama.config.hidden_act == (overrides.get("gate") or "linear")
    tokens = torch.randint(0, 50, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = llama(tokens).logits.double()
    assert (logits - reference_logits(state, config, tokens)).abs().max().item() <= 1e-5
    provenance = hb.publishing.provenance.provenance_of(llama)
    assert provenance.max_abs_logit_diff <= 1e-5 and str(tmp_path) in provenance.source


def test_to_llama_of_embedded_checkpoint_loads_back_bilinear(tmp_path):
    llama = hb.to_llama(EMBEDDED)
    tokens = torch.randint(0, llama.config.vocab_size, (2, 30), generator=torch.Generator().manual_seed(2))
    source = hb.from_pretrained(EMBEDDED)
    expected = source(tokens)
    tolerance = 1e-6 * expected.abs().max().item()  # float32 rounding, relative to logits of size ~20
    with torch.no_grad():
        assert (llama(tokens).logits - expected).abs().max().item() <= tolerance
    llama.save_pretrained(tmp_path)
    bridge = hb.from_pretrained(tmp_path, tokenizer=source.tokenizer)
    assert all(isinstance(block.mlp, hb.HookedBilinearMLP) for block in bridge.blocks)
    assert (bridge(tokens) - expected).abs().max().item() <= tolerance


@pytest.mark.parametrize(
    "fmt,overrides,reason",
    [
        ("legacy", {}, "it is in the legacy format, whose RMSNorms carry a bias that Llama's RMSNorm cannot hold"),
        ("current", {"normalization": False}, "normalization is false, and a Llama block always applies RMSNorm"),
        ("current", {"bilinear": False}, "its MLP is plain (bilinear: false), and a Llama MLP is always gated"),
    ],
    ids=["legacy", "no-norm", "plain-mlp"],
)
def test_unrepresentable_formats_are_refused_with_reason(tmp_path, fmt, overrides, reason):
    write_checkpoint(tmp_path, make_config(fmt, **overrides), vocab=50)
    with pytest.raises(hb.ConversionError) as refused:
        hb.to_llama(tmp_path)
    message = str(refused.value)
    assert f"has no exact LlamaForCausalLM form: {reason}. Load it with hooked_bilinear.from_pretrained" in message
    assert "save_pretrained(..., as_llama=False)" in message


def test_authors_bias_format_round_trips_as_llama_mlp_bias(tmp_path, tokens):
    config = make_config("current", bias=True)
    state = write_checkpoint(tmp_path / "authors", config, vocab=50)
    llama = hb.to_llama(tmp_path / "authors")
    assert llama.config.mlp_bias and not llama.config.attention_bias
    llama.save_pretrained(tmp_path / "llama")
    expected = reference_logits(state, config, tokens)
    with torch.no_grad():
        reloaded = LlamaForCausalLM.from_pretrained(str(tmp_path / "llama")).eval()
        assert (reloaded(tokens).logits - expected).abs().max().item() <= 1e-5
    bridge = hb.from_pretrained(tmp_path / "llama")
    assert (bridge(tokens) - expected).abs().max().item() <= 1e-5


def test_to_llama_of_a_bridge(tmp_path):
    bridge = hb.from_pretrained(EMBEDDED)
    llama = hb.to_llama(bridge)
    tokens = torch.randint(0, 330, (2, 30), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = bridge(tokens)
        assert (llama(tokens).logits - expected).abs().max().item() <= 1e-6 * expected.abs().max().item()
    assert hb.publishing.source.tokenizer_of(llama) is bridge.tokenizer
    write_llama(tmp_path / "llama")
    with pytest.raises(hb.ConversionError, match="already a LlamaForCausalLM.*save_pretrained"):
        hb.to_llama(hb.from_pretrained(tmp_path / "llama", tokenizer=bridge.tokenizer))
    bridge.enable_compatibility_mode()
    with pytest.raises(hb.ConversionError, match="weight processing.*hooked_bilinear.from_pretrained without"):
        hb.to_llama(bridge)
    with pytest.raises(hb.ConversionError, match="takes a TransformerBridge.*not int"):
        hb.to_llama(3)


def test_the_llama_config_is_the_tdooms_one():
    """Every LlamaConfig field the conversion sets (docs/formats.md section 4), from a config with a non-default
    rotary base and context: the logits check inside to_llama holds only if the rotary base is carried over."""
    torch.manual_seed(0)
    config = hb.BilinearConfig(vocab_size=50, d_model=32, d_hidden=48, n_layer=2, n_head=4, n_ctx=48, rope_theta=500.0)
    llama = hb.to_llama(hb.BilinearForCausalLM(config))
    c = llama.config
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (4, 4, 8)
    assert c.max_position_embeddings == 48 and c.rope_parameters["rope_theta"] == 500.0
    assert c.rope_parameters["rope_type"] == "default"
    assert (c.attention_bias, c.tie_word_embeddings, c.bos_token_id, c.eos_token_id) == (False, False, 1, 2)


def test_the_provenance_says_what_was_converted_and_compared(tmp_path):
    write_checkpoint(tmp_path, make_config("current"), vocab=50)
    provenance = hb.publishing.provenance.provenance_of(hb.to_llama(tmp_path))
    assert provenance.source == str(tmp_path) and provenance.base_model is None  # a local folder has no Hub base
    assert provenance.conversion == (
        "tdooms current format -> LlamaForCausalLM (hooked_bilinear.to_llama): q/k/v split from the fused "
        "qkv, attention scale 1/sqrt(2 n_layer) folded into o_proj, weightless RMSNorms as weight 1 "
        "(eps 1e-08), gate_proj = LEFT, up_proj = RIGHT, down_proj = P, hidden_act 'linear'"
    )
    assert provenance.compared == (
        "this LlamaForCausalLM against the source checkpoint it was converted from (the same function "
        "in another form: a check of the conversion)"
    )
    assert list(provenance.details) == ["probe_tokens"] and len(provenance.details["probe_tokens"]) == 2


def test_a_bridge_source_records_its_own_difference_and_processing():
    bridge = hb.from_pretrained(EMBEDDED)
    provenance = hb.publishing.provenance.provenance_of(hb.to_llama(bridge))
    key = "max |logit difference| between the TransformerBridge and its copied model"
    assert float(provenance.details[key]) <= 1e-4
    assert not provenance.source.startswith("TransformerLens-processed")
    bridge.enable_compatibility_mode()
    processed = hb.publishing.provenance.provenance_of(hb.to_llama(bridge, processed_weights=True))
    assert processed.source.startswith("TransformerLens-processed weights (fold_ln, centering) of ")


def test_a_double_precision_model_is_converted_without_touching_it(tmp_path):
    """A float64 model: converted from a float32 copy, the caller's model left in float64."""
    write_checkpoint(tmp_path, make_config("current"), vocab=50)
    model = hb.BilinearForCausalLM.from_pretrained(tmp_path).double()
    llama = hb.to_llama(model)
    assert model.dtype == torch.float64 and llama.dtype == torch.float32
    assert hb.publishing.provenance.provenance_of(llama).max_abs_logit_diff <= 1e-5


def test_two_reasons_are_joined():
    config = hb.BilinearConfig(d_model=16, n_head=2, normalization=False, bilinear=False)
    reasons = hb.publishing.to_llama.representable(config)
    assert len(reasons) == 2
    with pytest.raises(hb.ConversionError, match="; ".join(reasons).replace("(", r"\(").replace(")", r"\)")):
        hb.to_llama(hb.BilinearForCausalLM(config))


def test_the_tolerance_is_honoured_and_named_in_the_refusal(tmp_path):
    """to_llama's tolerance (default 1e-5 of the logit scale) reaches the logits check: one far below float32
    rounding refuses the conversion, naming the call."""
    assert inspect.signature(hb.to_llama).parameters["tolerance"].default == 1e-5
    assert inspect.signature(hb.publishing.to_llama.convert).parameters["tolerance"].default == 1e-5
    write_checkpoint(tmp_path, make_config("current"), vocab=50)
    with pytest.raises(hb.ConversionError, match=rf"^to_llama\({re.escape(str(tmp_path))}\): the converted model's"):
        hb.to_llama(tmp_path, tolerance=1e-30)


def test_the_exact_refusals_of_what_is_not_a_tdooms_model(tmp_path):
    write_llama(tmp_path / "llama")
    with pytest.raises(hb.ConversionError) as refused:
        hb.to_llama(hb.from_pretrained(tmp_path / "llama", tokenizer=hb.from_pretrained(EMBEDDED).tokenizer))
    assert str(refused.value) == (
        "to_llama: this model is already a LlamaForCausalLM; publish it as it is with "
        "hooked_bilinear.save_pretrained(model, folder) (a bridge is accepted too)."
    )
    with pytest.raises(hb.ConversionError, match=r"^to_llama takes a TransformerBridge from .*, not int\.$"):
        hb.to_llama(3)


def _small_model(seed: int = 0) -> hb.BilinearForCausalLM:
    torch.manual_seed(seed)
    return hb.BilinearForCausalLM(hb.BilinearConfig(vocab_size=50, d_model=32, d_hidden=48, n_layer=2, n_head=4))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_is_converted_from_a_float32_copy(dtype):
    """A bfloat16 / float16 source is compared in float32 (its own precision would miss the 1e-5 check by far), the
    converted model holds the source's weights exactly, and the caller's model is left in its dtype."""
    model = _small_model().to(dtype)
    llama = hb.to_llama(model)
    assert model.dtype == dtype and llama.dtype == torch.float32
    assert hb.publishing.provenance.provenance_of(llama).max_abs_logit_diff <= 1e-5
    torch.testing.assert_close(llama.lm_head.weight, model.lm_head.weight.float(), atol=0, rtol=0)
    tokens = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.float()(tokens).logits
        assert (llama(tokens).logits - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_only_a_model_that_is_not_float32_on_the_cpu_is_copied(monkeypatch):
    """The caller's model is never converted in place: one in another dtype is copied first; a float32 CPU model, the
    common case, is read as it is, not duplicated in memory."""
    module = hb.publishing.to_llama
    copied = []

    def deepcopy(value):
        copied.append(value)
        return copy.deepcopy(value)

    monkeypatch.setattr(module, "copy", types.SimpleNamespace(deepcopy=deepcopy))
    model = _small_model()
    hb.to_llama(model)
    assert copied == []
    double = _small_model().double()
    hb.to_llama(double)
    assert len(copied) == 1 and copied[0] is double and double.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_callers_model_comes_back_in_the_mode_it_was_given(dtype):
    """to_llama reads the caller's model in eval mode but hands it back as it came: a model in the middle of training
    stays in training mode (before, a float32 CPU model, read without a copy, came back in eval mode)."""
    model = _small_model().to(dtype).train()
    hb.to_llama(model)
    assert model.training and all(module.training for module in model.modules())
    model.eval()
    hb.to_llama(model)
    assert not any(module.training for module in model.modules())


def test_a_transformers_model_that_is_not_tdooms_is_refused_naming_its_class():
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    config.name_or_path = "someone/tiny-gpt2"
    with pytest.raises(hb.ConversionError) as refused:
        hb.to_llama(transformers.GPT2LMHeadModel(config))
    assert str(refused.value) == (
        "to_llama converts the tdooms formats (BilinearForCausalLM); someone/tiny-gpt2 is a GPT2LMHeadModel."
    )


def test_the_refusal_names_the_python_call_or_the_command(tmp_path, capsys):
    """The way out of an unrepresentable checkpoint, exactly: the keyword from Python, the command on the command
    line (`hooked-bilinear to-llama`), where nothing is written."""
    write_checkpoint(tmp_path / "plain", make_config("current", bilinear=False), vocab=50)
    message = (
        f"{tmp_path / 'plain'} has no exact LlamaForCausalLM form: its MLP is plain (bilinear: false), and a Llama MLP "
        "is always gated. Load it with hooked_bilinear.from_pretrained, or publish it in this package's own class "
        "(BilinearForCausalLM): "
    )
    with pytest.raises(hb.ConversionError) as refused:
        hb.to_llama(tmp_path / "plain")
    assert str(refused.value) == message + "save_pretrained(..., as_llama=False)."
    assert main(["to-llama", str(tmp_path / "plain"), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        f"hooked-bilinear to-llama: error: {message}hooked-bilinear save SOURCE OUT --as-llama False.\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_hub_id_is_recorded_as_the_base_model(tmp_path, monkeypatch):
    """A Hub id (a name with "/" that is no local path) becomes the card's base_model; the download is replaced by a
    local folder here, so nothing is fetched."""
    write_checkpoint(tmp_path / "snapshot", make_config("current"), vocab=50)
    asked = []

    def resolve_folder(name, revision=None):
        asked.append(name)
        return tmp_path / "snapshot"

    monkeypatch.setattr(hb.publishing.source, "resolve_folder", resolve_folder)
    monkeypatch.chdir(tmp_path)  # no folder "someone/tiny-bilinear" here
    llama = hb.to_llama("someone/tiny-bilinear")
    assert asked == ["someone/tiny-bilinear"]
    provenance = hb.publishing.provenance.provenance_of(llama)
    assert provenance.base_model == "someone/tiny-bilinear" and provenance.source == "someone/tiny-bilinear"
    card = model_card(llama, "someone/tiny-bilinear-llama", provenance)
    assert "\nbase_model: someone/tiny-bilinear\n" in card
    (tmp_path / "someone" / "tiny-bilinear").mkdir(parents=True)  # the same name, now a local folder: no Hub base
    assert hb.publishing.provenance.provenance_of(hb.to_llama("someone/tiny-bilinear")).base_model is None


def test_the_default_tolerance_refuses_a_conversion_off_by_a_thousandth(monkeypatch):
    """A conversion whose lm_head is off by 1e-3 (logits off by about 1e-4 of their scale) is refused by the default
    tolerance of to_llama and of convert, and accepted when the tolerance allows it."""
    module = hb.publishing.to_llama
    real = module.llama_state_dict

    def off_by_a_thousandth(state, config):
        out = real(state, config)
        out["lm_head.weight"] = out["lm_head.weight"] * 1.001
        return out

    monkeypatch.setattr(module, "llama_state_dict", off_by_a_thousandth)
    model = _small_model()
    llama = hb.to_llama(model, tolerance=1e-2)
    difference = hb.publishing.provenance.provenance_of(llama).max_abs_logit_diff
    assert 1e-4 < difference < 1e-2
    with pytest.raises(
        hb.ConversionError, match=r"^to_llama\(.*\): the converted model's logits differ .* allowed 1e-05"
    ):
        hb.to_llama(model)
    with pytest.raises(hb.ConversionError, match=r"allowed 1e-05 x logit scale"):
        module.convert(hb.publishing.source.resolve_source(model, "to_llama"))
