"""save_pretrained: a Hub-ready folder that stock transformers (fresh process) and from_pretrained load with the
same logits and bit-identical tensors; atomic, never overwrites without the flag; clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
import yaml

import hooked_bilinear as hb
from hooked_bilinear.modeling.files import read_weights
from tests.llama import tiny_llama
from tests.reference import EMBEDDED
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]  # no partial or backup folders


def test_failure_mid_write_leaves_nothing(tmp_path):
    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    with pytest.raises(hb.PublishError, match="disk full.*nothing was left"):
        hb.save_pretrained(tiny_llama(), tmp_path / "model", tokenizer=BrokenTokenizer())
    assert [p.name for p in tmp_path.iterdir()] == [".model.lock"]  # the lock file only


def test_failure_while_overwriting_keeps_old_folder(tmp_path):
    target = hb.save_pretrained(tiny_llama(seed=1), tmp_path / "model")
    before = (target / "model.safetensors").read_bytes()

    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    with pytest.raises(hb.PublishError):
        hb.save_pretrained(tiny_llama(seed=2), target, overwrite=True, tokenizer=BrokenTokenizer())
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]


def test_read_only_target_is_a_clear_error(read_only_dir):
    with pytest.raises(hb.PublishError, match="cannot write"):
        hb.save_pretrained(tiny_llama(), read_only_dir / "model")


FRESH = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, text, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(folder).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
assert "hooked_bilinear" not in sys.modules, "hooked_bilinear was imported"
ids = tokenizer(text, return_tensors="pt")["input_ids"]
from transformer_lens.model_bridge import TransformerBridge
bridge = TransformerBridge.boot_transformers(folder, device="cpu")
with torch.no_grad():
    result = {"class": type(model).__name__, "ids": ids, "decoded": tokenizer.decode(ids[0]),
              "stock": model(ids).logits, "boot": bridge(ids), "boot_ids": bridge.to_tokens(text)}
torch.save(result, out)
"""


def test_bridge_is_published_as_stock_llama_loadable_in_a_fresh_process(tmp_path):
    bridge = hb.from_pretrained(EMBEDDED)
    folder = hb.save_pretrained(bridge, tmp_path / "published")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= {
        p.name for p in folder.iterdir()
    }
    text = "once upon a time , there was a cat named tom ."
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH, str(folder), text, str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = torch.load(tmp_path / "out.pt", weights_only=True)
    assert fresh["class"] == "LlamaForCausalLM"
    ids = bridge.tokenizer(text, return_tensors="pt")["input_ids"]
    assert torch.equal(fresh["ids"], ids) and torch.equal(fresh["boot_ids"], ids)  # the tokenizer it was loaded with
    assert fresh["decoded"] == bridge.tokenizer.decode(ids[0])
    with torch.no_grad():
        expected = bridge(ids)
    assert (fresh["stock"] - expected).abs().max().item() <= 1e-5
    assert (fresh["boot"] - expected).abs().max().item() <= 1e-5
    card = (folder / "README.md").read_text()
    diff = hb.publishing.provenance.provenance_of(hb.to_llama(EMBEDDED)).max_abs_logit_diff
    assert (
        f"max |logit difference| of this LlamaForCausalLM against the source checkpoint it was converted from (the same "
        f"function in another form: a check of the conversion), on probe tokens: {diff:.3g}"
    ) in card
    assert "computes SiLU" in card and f'hb.from_pretrained("{folder.name}", compatibility_mode=True)' in card


def test_processed_bridge_needs_the_flag(tmp_path):
    bridge = hb.from_pretrained(EMBEDDED)
    bridge.enable_compatibility_mode()  # HookedTransformer's processing: the unembedding is centred
    with pytest.raises(hb.ConversionError, match="weight processing.*processed_weights=True"):
        hb.save_pretrained(bridge, tmp_path / "processed")
    assert not (tmp_path / "processed").exists()
    folder = hb.save_pretrained(bridge, tmp_path / "processed", processed_weights=True)
    assert "TransformerLens-processed weights" in (folder / "README.md").read_text()
    tokens = torch.randint(0, 330, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        published, processed = hb.load_model(folder)(tokens).logits, bridge(tokens)
        raw = hb.from_pretrained(EMBEDDED)(tokens)
    assert (published - processed).abs().max().item() <= 1e-5
    assert (published - raw).abs().max().item() > 1e-2  # the processed weights, not the checkpoint's


def test_tokenizer_is_always_written_or_warned(tmp_path, recwarn):
    # to_llama records its source's tokenizer; publishing by name finds the checkpoint's.
    hb.save_pretrained(hb.to_llama(EMBEDDED), tmp_path / "converted")
    hb.save_pretrained(EMBEDDED, tmp_path / "by-name")
    assert not [w for w in recwarn if "tokenizer" in str(w.message)]
    for name in ("converted", "by-name"):
        assert (tmp_path / name / "tokenizer.json").is_file()
        assert json.loads((tmp_path / name / "config.json").read_text())["model_type"] == "llama"
    with pytest.warns(UserWarning, match="No tokenizer is known.*none is written.*tokenizer=") as caught:
        hb.save_pretrained(tiny_llama(), tmp_path / "none")
    assert caught[0].filename == __file__  # attributed to the caller
    assert not any(p.name.startswith("tokenizer") for p in (tmp_path / "none").iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hb.save_pretrained(tiny_llama(), tmp_path / "ids", token_ids_only=True)


def test_tdooms_model_without_llama_form(tmp_path):
    with pytest.warns(UserWarning, match="no stock LlamaForCausalLM form.*normalization is false.*as_llama=False"):
        folder = hb.save_pretrained("modadd-p59", tmp_path / "default", token_ids_only=True)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "tdooms_bilinear"
    with pytest.raises(hb.ConversionError, match=r"normalization is false.*save_pretrained\(\.\.\., as_llama=False\)"):
        hb.save_pretrained("modadd-p59", tmp_path / "llama", token_ids_only=True, as_llama=True)
    assert not (tmp_path / "llama").exists()
    tokens = torch.tensor([[3, 5]])
    with torch.no_grad():
        assert torch.equal(hb.load_model(folder)(tokens).logits, hb.load_model("modadd-p59")(tokens).logits)


def test_unknown_object_is_refused(tmp_path):
    with pytest.raises(hb.ConversionError, match="takes a TransformerBridge.*not dict"):
        hb.save_pretrained({"weights": 1}, tmp_path / "model")


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


@pytest.mark.parametrize("stock", [True, False], ids=["llama", "tdooms"])
def test_model_card_code_is_what_ruff_format_leaves(tmp_path, stock):
    """CI's `ruff format --check` reads the Python in markdown, the shipped checkpoints' cards included: a card is
    written formatted (each of its snippets: imports, a blank line, code)."""
    from hooked_bilinear.loading.pretrained import load_model
    from hooked_bilinear.publishing.model_card import model_card

    model = tiny_llama() if stock else load_model("modadd-p59")
    card = tmp_path / "README.md"
    card.write_text(model_card(model, "a-name", None))
    assert card.read_text().count("```python") == (2 if stock else 1)
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(card)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("which", "says"),
    [
        ("bilinear llama", "MLPs are bilinear: `down_proj(gate_proj(x) * up_proj(x))`, no activation"),
        ("swiglu llama", "MLPs are gated: `down_proj(act(gate_proj(x)) * up_proj(x))`, activation 'silu'"),
        ("modadd-p59", "MLPs are bilinear: "),
        ("modadd-relu-p59", "MLPs are plain (not gated): `W_out(act(W_in x))`, activation 'relu'"),
        ("glu tdooms", "MLPs are gated: `W_out(act(W_gate x) * (W_in x))`, activation 'gelu'"),
    ],
)
def test_model_card_names_the_mlp_the_model_has(which, says):
    """The card's sentence on the MLP matches the architecture: bilinear, gated (GLU / SwiGLU) or plain."""
    from hooked_bilinear.loading.pretrained import load_model
    from hooked_bilinear.publishing.model_card import model_card

    if which.endswith("llama"):
        model = tiny_llama("linear" if which.startswith("bilinear") else "silu")
    elif which == "glu tdooms":
        model = load_model("modadd-p59")
        model.config.gate = "gelu"
    else:
        model = load_model(which)
    assert says in model_card(model, "a-name", None)
