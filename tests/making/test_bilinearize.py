"""bilinearize: a SwiGLU Llama becomes an exactly bilinear stock Llama; training resumes from checkpoints; bad input
is refused with a clear error."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from transformers import LlamaForCausalLM

import hooked_bilinear as hb
from hooked_bilinear.making.bilinearize import bilinearize
from hooked_bilinear.making.data import PackedSequences
from hooked_bilinear.publishing.provenance import provenance_of
from hooked_bilinear.publishing.verify import probe_tokens
from tests.llama import tiny_llama
from tests.roundtrip import stock_logits_in_fresh_process

FAST = dict(steps=24, batch_size=4, seq_len=32, warmup_steps=4, checkpoint_every=5, progress=False, lr=1e-3)


def periodic_tokens(n: int = 6000, period: int = 7, seed: int = 0) -> torch.Tensor:
    """A learnable stream: a fixed random pattern of `period` tokens repeated."""
    pattern = torch.randint(3, 330, (period,), generator=torch.Generator().manual_seed(seed))
    return pattern.repeat(n // period)


@pytest.mark.parametrize("recipe", ["paper", "cosine80"])
def test_result_is_exactly_bilinear_and_learns(caplog, tmp_path, recipe):
    with caplog.at_level(logging.INFO, logger="hooked_bilinear"):
        model = bilinearize(tiny_llama("silu", std=0.05), periodic_tokens(), recipe=recipe, **FAST)
    assert isinstance(model, LlamaForCausalLM) and model.config.hidden_act == "linear"
    assert f"recipe {recipe}; estimated training memory per rank" in caplog.text
    provenance = provenance_of(model)
    assert provenance.max_abs_logit_diff <= 1e-5 and provenance.details["final_train_loss"] < 5.0  # log(330) = 5.8
    # Every MLP is down(gate(x) * up(x)), from its own weights, with no activation left.
    x = torch.randn(3, 5, 64)
    for layer in model.model.layers:
        mlp = layer.mlp
        expected = (x @ mlp.gate_proj.weight.T * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T
        torch.testing.assert_close(mlp(x), expected, atol=1e-6, rtol=1e-5)
    # The hooked model sees HookedBilinearMLPs with the same logits.
    tokens = periodic_tokens()[:20].unsqueeze(0)
    bridge = hb.from_pretrained(hb.save_pretrained(model, tmp_path / "bilinear"))
    assert all(isinstance(block.mlp, hb.HookedBilinearMLP) for block in bridge.blocks)
    with torch.no_grad():
        assert (bridge(tokens) - model(tokens).logits).abs().max().item() <= 1e-5


def test_bilinearized_model_round_trips_in_stock_transformers(tmp_path):
    tokenizer = hb.from_pretrained("ts-synthetic-2l").tokenizer
    model = bilinearize(tiny_llama("silu", std=0.05), periodic_tokens(), tokenizer=tokenizer, **FAST)
    folder = hb.save_pretrained(model, tmp_path / "bilinear")  # writes the tokenizer bilinearize was given
    assert (folder / "tokenizer.json").is_file()
    card = (folder / "README.md").read_text()
    assert "bilinearize" in card and "beta annealed" in card
    tokens = periodic_tokens()[:24].unsqueeze(0)
    stock = stock_logits_in_fresh_process(folder, tokens, tmp_path)
    assert stock["class"] == "LlamaForCausalLM" and stock["act"] == "linear"
    with torch.no_grad():
        assert torch.equal(stock["logits"], model(tokens).logits)
    assert (hb.from_pretrained(folder)(tokens) - stock["logits"]).abs().max().item() <= 1e-5


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    tokens = periodic_tokens()
    uninterrupted = bilinearize(tiny_llama("silu", std=0.05), tokens, checkpoint_dir=tmp_path / "a", **FAST)

    real_batch = PackedSequences.batch

    def crash_at_step_12(self, step, *args):
        if step == 12:
            raise KeyboardInterrupt("simulated interruption")
        return real_batch(self, step, *args)

    monkeypatch.setattr(PackedSequences, "batch", crash_at_step_12)
    with pytest.raises(KeyboardInterrupt):
        bilinearize(tiny_llama("silu", std=0.05), tokens, checkpoint_dir=tmp_path / "b", **FAST)
    monkeypatch.setattr(PackedSequences, "batch", real_batch)
    resumed = bilinearize(tiny_llama("silu", std=0.05), tokens, checkpoint_dir=tmp_path / "b", **FAST)
    state_a, state_b = uninterrupted.state_dict(), resumed.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    # Other settings with the same folder: refused rather than silently mixed.
    with pytest.raises(hb.HookedBilinearError, match=r"written by another run \(different steps"):
        bilinearize(tiny_llama("silu", std=0.05), tokens, checkpoint_dir=tmp_path / "b", **{**FAST, "steps": 30})


def test_non_llama_and_already_bilinear_models_are_refused(tmp_path, checkpoint):
    with pytest.raises(hb.ConversionError, match="needs a LlamaForCausalLM"):
        bilinearize(hb.BilinearForCausalLM(hb.BilinearConfig()), periodic_tokens(), **FAST)
    folder, _, _ = checkpoint("current")
    with pytest.raises(hb.ConversionError, match="model_type 'llama'"):
        bilinearize(folder, periodic_tokens(), **FAST)
    with pytest.raises(hb.ConversionError, match="already bilinear"):
        bilinearize(tiny_llama("linear"), periodic_tokens(), **FAST)
    with pytest.raises(hb.ConversionError, match="gelu"):
        bilinearize(tiny_llama("gelu"), periodic_tokens(), **FAST)


def test_bad_datasets_are_refused(tmp_path):
    model = tiny_llama("silu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = periodic_tokens()
    tokens[1234] = 330
    with pytest.raises(hb.DatasetError, match="outside the model's vocabulary.*330 at position 1234"):
        bilinearize(model, tokens, **FAST)
    with pytest.raises(hb.DatasetError, match="fewer than one sequence"):
        bilinearize(model, periodic_tokens()[:20], **FAST)
    with pytest.raises(hb.DatasetError, match="integers"):
        bilinearize(model, torch.rand(1000), **FAST)
    with pytest.raises(hb.DatasetError, match="does not exist"):
        bilinearize(model, tmp_path / "missing.pt", **FAST)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    torch.save(periodic_tokens(), tmp_path / "tokens.pt")
    assert bilinearize(model, tmp_path / "tokens.pt", **FAST).config.hidden_act == "linear"


def test_the_card_labels_the_fold_check_and_states_the_distance_from_the_source(tmp_path):
    source = tiny_llama("silu", std=0.05)
    model = bilinearize(copy.deepcopy(source), periodic_tokens(), **FAST)
    provenance = provenance_of(model)
    # the distance from the source SwiGLU model, recomputed here on the same probe tokens
    probe = probe_tokens(source.config.vocab_size, FAST["seq_len"])
    with torch.no_grad():
        distance = (model(probe).logits.double() - source(probe).logits.double()).abs()
    key = "max |logit difference| of this bilinear model against the source SwiGLU model (probe tokens)"
    assert float(provenance.details[key]) == pytest.approx(distance.max().item(), rel=1e-2)
    assert distance.max().item() > 100 * provenance.max_abs_logit_diff  # two different figures
    card = (hb.save_pretrained(model, tmp_path / "bilinear", token_ids_only=True) / "README.md").read_text()
    (verification,) = [line for line in card.splitlines() if line.startswith("- Verification:")]
    assert "fold" in verification and "NOT the distance from the source SwiGLU model" in verification
    assert f"- {key}: {provenance.details[key]}" in card


def test_a_warmup_longer_than_the_run_or_sequences_past_the_positions_are_refused_before_training(tmp_path):
    with pytest.raises(hb.HookedBilinearError, match=r"warmup_steps=30 is longer than the run \(steps=24\).*80% of lr"):
        bilinearize(
            tiny_llama("silu"), periodic_tokens(), **{**FAST, "warmup_steps": 30}, checkpoint_dir=tmp_path / "s"
        )
    with pytest.raises(hb.HookedBilinearError, match=r"seq_len=200 is longer than the model's 128 positions"):
        bilinearize(tiny_llama("silu"), periodic_tokens(), **{**FAST, "seq_len": 200}, checkpoint_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()
