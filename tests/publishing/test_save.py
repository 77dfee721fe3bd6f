"""save_pretrained: a Hub-ready folder that stock transformers (fresh process) and from_pretrained load with the
same logits and bit-identical tensors; atomic, never overwrites without the flag; clear errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import hooked_bilinear as hb
from hooked_bilinear.modeling.files import read_weights
from tests.llama import tiny_llama
from tests.roundtrip import stock_logits_in_fresh_process


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_converted_model_round_trips(tmp_path, converted):
    llama, tokenizer = converted
    folder = hb.save_pretrained(llama, tmp_path / "ts-llama", tokenizer=tokenizer)
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= names
    assert json.loads((folder / "config.json").read_text())["hidden_act"] == "linear"
    # Tensors in the files are bit-identical to the model's.
    saved, state = read_weights(folder), llama.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in state)
    # Model card: Hub metadata and the measured verification.
    card = (folder / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "transformers"
    assert {"bilinear", "transformer-lens"} <= set(meta["tags"])
    diff = hb.publishing.provenance.provenance_of(llama).max_abs_logit_diff
    assert f"{diff:.3g}" in card and "ts-synthetic-2l" in card
    # Stock transformers in a fresh process, without hooked_bilinear, and from_pretrained: the same logits.
    tokens = tokenizer("once upon a time , there was a cat", return_tensors="pt")["input_ids"]
    stock = stock_logits_in_fresh_process(folder, tokens, tmp_path)
    assert stock["class"] == "LlamaForCausalLM" and stock["act"] == "linear"
    with torch.no_grad():
        assert torch.equal(stock["logits"], llama(tokens).logits)
    bridge = hb.from_pretrained(folder)
    assert bridge.tokenizer is not None and isinstance(bridge.blocks[0].mlp, hb.HookedBilinearMLP)
    assert (bridge(tokens) - stock["logits"]).abs().max().item() <= 1e-6 * stock["logits"].abs().max().item()


def test_sharded_save_round_trips(tmp_path):
    model = tiny_llama()
    folder = hb.save_pretrained(model, tmp_path / "sharded", max_shard_size="100KB")
    assert (folder / "model.safetensors.index.json").is_file()
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    saved = read_weights(folder)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    tokens = torch.randint(0, 330, (1, 16))
    with torch.no_grad():
        assert torch.equal(hb.from_pretrained(folder)(tokens), hb.from_pretrained(folder)(tokens))
        assert (hb.from_pretrained(folder)(tokens) - model(tokens).logits).abs().max().item() <= 1e-5


def test_existing_folder_is_not_overwritten_without_flag(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(hb.PublishError, match="already exists.*overwrite=True"):
        hb.save_pretrained(tiny_llama(), target)
    assert [p.name for p in target.iterdir()] == ["precious.txt"]
    hb.save_pretrained(tiny_llama(), target, overwrite=True)
    assert (target / "model.safetensors").is_file() and not (target / "precious.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no partial or backup folders left


def test_failure_mid_write_leaves_nothing(tmp_path):
    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    with pytest.raises(hb.PublishError, match="disk full.*nothing was left"):
        hb.save_pretrained(tiny_llama(), tmp_path / "model", tokenizer=BrokenTokenizer())
    assert list(tmp_path.iterdir()) == []


def test_failure_while_overwriting_keeps_old_folder(tmp_path):
    target = hb.save_pretrained(tiny_llama(seed=1), tmp_path / "model")
    before = (target / "model.safetensors").read_bytes()

    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    with pytest.raises(hb.PublishError):
        hb.save_pretrained(tiny_llama(seed=2), target, overwrite=True, tokenizer=BrokenTokenizer())
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_read_only_target_is_a_clear_error(read_only_dir):
    with pytest.raises(hb.PublishError, match="cannot write"):
        hb.save_pretrained(tiny_llama(), read_only_dir / "model")


def test_bridge_is_refused_with_advice(tmp_path):
    bridge = hb.from_pretrained("ts-synthetic-2l")
    with pytest.raises(hb.PublishError, match="TransformerBridge"):
        hb.save_pretrained(bridge, tmp_path / "model")


def test_read_back_check_catches_a_changed_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    from hooked_bilinear.publishing.save import check_saved_tensors

    model = tiny_llama()
    folder = hb.save_pretrained(model, tmp_path / "model")
    state = load_file(str(folder / "model.safetensors"))
    state["lm_head.weight"][0, 0] += 1e-3
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(hb.PublishError, match="lm_head.weight"):
        check_saved_tensors(model, folder)
    del state["lm_head.weight"]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(hb.PublishError, match="lacks tensors"):
        check_saved_tensors(model, folder)
