"""The task's inputs, labels, split and config record; the shipped models load as hooked transformers that record
their task, tokenize "a b =" and answer at the last position."""

from __future__ import annotations

import warnings

import pytest
import torch

import hooked_bilinear as hb
from hooked_bilinear.errors import CheckpointFormatError
from hooked_bilinear.loading.pretrained import load_model
from hooked_bilinear.toy.modadd import NANDA, PIZZA, ModAddTask, all_logits


def test_inputs_labels_and_split():
    task = ModAddTask(p=7, input_format="a b =", train_fraction=0.3)
    tokens, labels = task.tokens(), task.labels()
    assert tokens.shape == (49, 3) and (tokens[:, 2] == 7).all()
    assert tokens[3 * 7 + 5].tolist() == [3, 5, 7] and labels[3 * 7 + 5].item() == 1
    train, test = task.split()
    assert len(train) == round(0.3 * 49) and len(set(train.tolist()) | set(test.tolist())) == 49
    assert torch.equal(train, ModAddTask(p=7, train_fraction=0.3).split()[0]), "the split must be seeded"
    assert not torch.equal(train, ModAddTask(p=7, train_fraction=0.3, seed=1).split()[0])
    assert ModAddTask(p=7, input_format="a b").tokens().shape == (49, 2)


def test_setups_and_bad_input():
    assert (NANDA.p, NANDA.input_format, NANDA.train_fraction, NANDA.uniform_attention) == (113, "a b =", 0.3, False)
    assert (PIZZA.p, PIZZA.input_format, PIZZA.train_fraction, PIZZA.uniform_attention) == (59, "a b", 0.8, True)
    with pytest.raises(ValueError, match="input_format"):
        ModAddTask(input_format="a + b")
    with pytest.raises(ValueError, match="train_fraction"):
        ModAddTask(train_fraction=1.0)
    with pytest.raises(CheckpointFormatError, match="not a modular-addition model"):
        ModAddTask.from_config(load_model("ts-synthetic-2l").config)


@pytest.mark.parametrize("name, setup", [("modadd-p59", PIZZA), ("modadd-p113", NANDA)])
def test_shipped_model_loads_as_a_hooked_transformer(name, setup):
    assert name in hb.shipped_checkpoints()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no tokenizer is shipped: token ids in, logits out
        bridge = hb.from_pretrained(name)
    config = bridge.original_model.config
    assert ModAddTask.from_config(config) == setup
    assert config.modular_addition["p"] == setup.p and config.modular_addition["input_format"] == setup.input_format
    tokens = setup.tokens()[3 * setup.p + 5][None]
    logits = bridge(tokens)[0, -1]
    assert logits.argmax().item() == 8
    model = load_model(name)
    table = all_logits(model, setup, torch.float32)
    assert torch.allclose(logits.double(), table[3, 5], atol=1e-4)
