"""Training: uniform attention stays exactly uniform, runs are deterministic, the target stops training, and a saved
model records its task and reloads."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, replace

import pytest
import torch

from hooked_bilinear.loading.pretrained import load_model, resolve_folder
from hooked_bilinear.toy.modadd import (
    NANDA,
    PIZZA,
    ModAddTask,
    ModAddTrainConfig,
    save_model,
    train_modadd,
    train_recipe,
)
from hooked_bilinear.toy.modadd.circuit import read_circuit
from hooked_bilinear.toy.modadd.interval import Ledger
from hooked_bilinear.toy.modadd.train import (
    SETUP_TRAINING,
    answer_logits,
    build_modadd_model,
    learning_rate_factor,
    uniform_answer_logits,
)

TASK = ModAddTask(p=11, input_format="a b", uniform_attention=True, train_fraction=0.8)
CONFIG = ModAddTrainConfig(d_model=32, d_hidden=32, max_epochs=30, eval_every=10, lr=3e-3)


def test_uniform_attention_keeps_query_and_key_at_zero_through_training():
    model, history = train_modadd(TASK, CONFIG, progress=False)
    qkv = model.transformer.h[0].attn.qkv.weight
    assert not qkv[: 2 * CONFIG.d_model].any(), "query/key weights moved: attention is no longer uniform"
    assert qkv[2 * CONFIG.d_model :].abs().sum() > 0
    assert read_circuit(model, TASK, Ledger()).uniform_attention
    assert history.epochs == [0, 10, 20, 30] and history.train_loss[-1] < history.train_loss[0]


def test_training_is_deterministic_and_stops_at_the_target(tmp_path):
    first, _ = train_modadd(TASK, CONFIG, progress=False)
    second, _ = train_modadd(TASK, CONFIG, progress=False)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    _, history = train_modadd(
        TASK,
        ModAddTrainConfig(
            d_model=32, d_hidden=32, max_epochs=30, eval_every=10, target_accuracy=0.0, target_loss=100.0
        ),
        progress=False,
    )
    assert history.reached_target and history.epochs == [0]
    folder = save_model(first, tmp_path / "m", history, CONFIG)
    assert ModAddTask.from_config(load_model(folder).config) == TASK
    record = json.loads((folder / "TRAINING.json").read_text())
    assert record["task"]["p"] == 11 and record["stages"] == json.loads(json.dumps([asdict(CONFIG)]))


@pytest.mark.parametrize(
    "name, setup, mlp",
    [("modadd-p113", "nanda", "bilinear"), ("modadd-p59", "pizza", "bilinear"), ("modadd-relu-p59", "pizza", "relu")],
)
def test_shipped_models_are_what_modadd_train_runs(name, setup, mlp):
    """`hooked-bilinear modadd train --setup S` (SETUP_TRAINING, its defaults) is what the shipped model's
    TRAINING.json records: the last epoch of fixed-length stages, no test set in the rule (issue 16)."""
    record = json.loads((resolve_folder(name) / "TRAINING.json").read_text())
    stages = [{k: tuple(v) if isinstance(v, list) else v for k, v in stage.items()} for stage in record["stages"]]
    stages = [{"mlp": "bilinear", **stage} for stage in stages]  # recorded before `mlp` existed: bilinear
    assert stages == [asdict(replace(stage, mlp=mlp)) for stage in SETUP_TRAINING[setup]]
    assert record["task"] == {"nanda": NANDA, "pizza": PIZZA}[setup].to_config()
    assert not any(stage["stop_at_target"] for stage in stages)
    assert record["epochs"] == sum(stage["max_epochs"] for stage in stages)
    assert record["train_accuracy"] == 1.0


def test_a_recipe_is_its_stages_in_turn_each_later_one_with_a_fresh_optimizer():
    first = replace(CONFIG, max_epochs=20, stop_at_target=False)
    second = replace(first, max_epochs=10, weight_decay=5.0, lr=1e-3)
    seen: list[int] = []
    model, history = train_recipe(TASK, (first, second), on_eval=lambda epoch, _: seen.append(epoch), progress=False)
    by_hand, part_one = train_modadd(TASK, first, progress=False)
    by_hand, part_two = train_modadd(TASK, second, model=by_hand, progress=False)
    for (name, a), b in zip(model.state_dict().items(), by_hand.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert history.epochs == seen == [0, 10, 20, 30]  # the second stage's epoch 0 is the first's 20
    assert history.test_loss == part_one.test_loss + part_two.test_loss[1:]
    assert part_one.then(part_two).seconds == part_one.seconds + part_two.seconds
    assert not torch.equal(model.lm_head.weight, train_modadd(TASK, first, progress=False)[0].lm_head.weight)


def test_training_runs_under_a_callers_no_grad():
    """The modular-addition tutorial analyses with gradients off and trains with --train: training turns them on."""
    with torch.no_grad():
        model, history = train_modadd(TASK, replace(CONFIG, max_epochs=10), progress=False)
    assert history.train_loss[-1] < history.train_loss[0]


def test_a_recipe_refuses_no_stages_and_later_stages_of_another_size():
    with pytest.raises(ValueError, match="empty recipe"):
        train_recipe(TASK, (), progress=False)
    with pytest.raises(ValueError, match="stage 2 has sizes .*d_model"):
        train_recipe(TASK, (CONFIG, replace(CONFIG, d_model=16)), progress=False)
    with pytest.raises(ValueError, match="stage 2 has sizes .*mlp"):
        train_recipe(TASK, (CONFIG, replace(CONFIG, mlp="relu")), progress=False)


def test_a_relu_model_trains_saves_and_reloads_as_relu(tmp_path):
    config = replace(CONFIG, mlp="relu")
    model, history = train_modadd(TASK, config, progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
    folder = save_model(model, tmp_path / "relu", history, config)
    loaded = load_model(folder)
    assert not loaded.config.bilinear and loaded.config.gate == "relu"
    assert json.loads((folder / "TRAINING.json").read_text())["stages"][0]["mlp"] == "relu"
    torch.testing.assert_close(answer_logits(loaded, TASK.tokens()), answer_logits(model, TASK.tokens()))
    with pytest.raises(ValueError, match="one-layer bilinear models"):
        read_circuit(model, TASK, Ledger())  # the bilinear circuit does not read a ReLU model


def test_cosine_schedule_and_training_without_the_test_set_in_the_stopping_rule():
    config = ModAddTrainConfig(
        d_model=32,
        d_hidden=32,
        max_epochs=40,
        eval_every=10,
        warmup_epochs=10,
        schedule="cosine",
        stop_at_target=False,
        target_accuracy=0.0,
        target_loss=100.0,
    )
    factors = [learning_rate_factor(config, e) for e in range(41)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(
        1.0 * 0.5 * (1 + math.cos(math.pi * 9 / 40))
    )
    assert factors[20] == pytest.approx(0.5) and factors[40] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert learning_rate_factor(replace(config, schedule="constant"), 30) == 1.0
    _, history = train_modadd(TASK, config, progress=False)
    assert history.epochs == [0, 10, 20, 30, 40] and not history.reached_target  # the met target did not stop it


def test_cosine_floor_and_gradient_clipping(monkeypatch):
    config = ModAddTrainConfig(
        d_model=32, d_hidden=32, max_epochs=40, eval_every=10, schedule="cosine", min_lr_fraction=0.1, grad_clip=0.5
    )
    assert learning_rate_factor(config, 40) == pytest.approx(0.1) and learning_rate_factor(config, 20) == pytest.approx(
        0.1 + 0.9 * 0.5
    )
    clipped_to = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        clipped_to.append(max_norm)
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    train_modadd(TASK, config, progress=False)
    assert clipped_to == [0.5] * 40
    train_modadd(TASK, replace(config, grad_clip=None), progress=False)
    assert len(clipped_to) == 40, "clipped without grad_clip"


def test_label_smoothing_is_the_training_loss_only(monkeypatch):
    smoothing = []
    cross_entropy = torch.nn.functional.cross_entropy

    def recording_cross_entropy(logits, labels, *args, label_smoothing=0.0, **kwargs):
        smoothing.append(label_smoothing)
        return cross_entropy(logits, labels, *args, label_smoothing=label_smoothing, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", recording_cross_entropy)
    config = replace(CONFIG, max_epochs=20, stop_at_target=False, label_smoothing=0.1)
    smoothed, history = train_modadd(TASK, config, progress=False)
    # per evaluation (epochs 0, 10, 20): train and test losses, plain; per epoch: the smoothed training loss
    assert smoothing.count(0.1) == 20 and smoothing.count(0.0) == 2 * len(history.epochs) == 6
    plain, _ = train_modadd(TASK, replace(config, label_smoothing=0.0), progress=False)
    assert not torch.equal(smoothed.lm_head.weight, plain.lm_head.weight)


@pytest.mark.parametrize(
    "field, value",
    [
        ("min_lr_fraction", -0.1),
        ("min_lr_fraction", 1.5),
        ("grad_clip", 0.0),
        ("label_smoothing", -0.1),
        ("label_smoothing", 1.0),
        ("mlp", "gelu"),
    ],
)
def test_bad_schedule_options_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ModAddTrainConfig(**{field: value})


@pytest.mark.parametrize("mlp", ["bilinear", "relu"])
@pytest.mark.parametrize("input_format", ["a b", "a b ="])
def test_uniform_answer_logits_is_the_forward_pass_and_its_gradient(input_format, mlp):
    task = replace(TASK, input_format=input_format)
    model = build_modadd_model(task, replace(CONFIG, init_std=0.3, mlp=mlp)).double()
    assert model.config.bilinear == (mlp == "bilinear") and model.config.gate == (None if mlp == "bilinear" else "relu")
    tokens, labels = task.tokens(), task.labels()
    fast, slow = uniform_answer_logits(model, tokens), answer_logits(model, tokens)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    assert slow.std() > 0.1  # weights large enough for the quadratic part to matter
    gradients = [
        torch.autograd.grad(torch.nn.functional.cross_entropy(f, labels), list(model.parameters()))
        for f in (fast, slow)
    ]
    for fast_gradient, slow_gradient in zip(*gradients, strict=True):
        torch.testing.assert_close(fast_gradient, slow_gradient, rtol=1e-10, atol=1e-12)


def test_uniform_answer_logits_refuses_trained_attention():
    model = build_modadd_model(NANDA, replace(CONFIG, d_model=16, d_hidden=16))
    with pytest.raises(ValueError, match="not uniform: call answer_logits"):
        uniform_answer_logits(model, NANDA.tokens()[:4])


def test_other_architectures_are_refused_by_the_readers():
    model = build_modadd_model(TASK, CONFIG)
    model.config.normalization = True  # what a model with normalization declares; the readers go by the config
    with pytest.raises(ValueError, match="normalization=True"):
        uniform_answer_logits(model, TASK.tokens()[:4])
    with pytest.raises(ValueError, match="the modular-addition circuit reads one-layer"):
        read_circuit(model, TASK, Ledger())


def test_modadd_train_cli_trains_a_relu_model_with_mlp_relu(tmp_path, monkeypatch):
    from hooked_bilinear.cli import main
    from hooked_bilinear.toy.modadd import train

    recipes: list = []
    shrink = {"d_model": 16, "d_hidden": 16, "max_epochs": 1}
    real = train.train_recipe
    monkeypatch.setattr(  # record the recipe, then run it at a toy size
        train,
        "train_recipe",
        lambda task, recipe, **_: (
            recipes.append(recipe) or real(task, tuple(replace(s, **shrink) for s in recipe), progress=False)
        ),
    )
    out = tmp_path / "relu"
    assert main(["modadd", "train", "--setup", "pizza", "--mlp", "relu", str(out), "--max-epochs", "2"]) == 0
    assert [stage.mlp for stage in recipes[0]] == ["relu", "relu"]
    config = json.loads((out / "config.json").read_text())
    assert config["bilinear"] is False and config["gate"] == "relu"
