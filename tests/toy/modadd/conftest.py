"""Small modular-addition models: random ones for every attention mode, and snapshots saved part-way through a short
training run (where a certificate may be vacuous but must never be wrong)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hooked_bilinear.toy.modadd import ModAddTask, ModAddTrainConfig, train_recipe
from hooked_bilinear.toy.modadd.train import build_modadd_model

SMALL = ModAddTrainConfig(d_model=32, n_head=4, d_hidden=48, init_std=0.3)
TASKS = {
    "a b = trained attention": ModAddTask(p=13, input_format="a b =", train_fraction=0.5),
    "a b uniform attention": ModAddTask(p=13, input_format="a b", uniform_attention=True, train_fraction=0.5),
    "a b trained attention": ModAddTask(p=11, input_format="a b", train_fraction=0.5),
}


@pytest.fixture(params=sorted(TASKS), scope="module")
def random_model(request):
    task = TASKS[request.param]
    return build_modadd_model(task, SMALL), task


@pytest.fixture(scope="module")
def uniform_model():
    """A random model with uniform attention: the residue proof's case."""
    task = TASKS["a b uniform attention"]
    return build_modadd_model(task, SMALL), task


@pytest.fixture(scope="session")
def snapshots(tmp_path_factory) -> list[Path]:
    """Folders saved at epochs 0, 80, 160, 240 of p=17 runs: pizza-like (uniform attention), the same under the
    shipped pizza recipe (label smoothing, weight decay 3, cosine), and 'a b =' plain and under the shipped Nanda recipe
    (label smoothing 0.05, weight decay 5); both shipped recipes then run a stage at weight decay 10 (epoch 320)."""
    root = tmp_path_factory.mktemp("modadd-snapshots")
    folders: list[Path] = []
    pizza_like = ModAddTask(p=17, input_format="a b", uniform_attention=True, train_fraction=0.8)
    short_run = ModAddTrainConfig(d_model=32, d_hidden=64, max_epochs=240, eval_every=80, lr=3e-3)
    smoothed = replace(short_run, label_smoothing=0.1, weight_decay=3.0, schedule="cosine", stop_at_target=False)
    pizza_recipe = (smoothed, replace(smoothed, weight_decay=10.0, schedule="constant", max_epochs=80))
    nanda_like = ModAddTask(p=17, input_format="a b =", train_fraction=0.5)
    nanda_stage = replace(short_run, label_smoothing=0.05, weight_decay=5.0, stop_at_target=False)
    nanda_recipe = (nanda_stage, replace(nanda_stage, weight_decay=10.0, max_epochs=80))
    for name, task, recipe in (
        ("uniform", pizza_like, (short_run,)),
        ("smoothed", pizza_like, pizza_recipe),
        ("nanda", nanda_like, (short_run,)),
        ("nanda-smoothed", nanda_like, nanda_recipe),
    ):

        def keep(epoch: int, model, name: str = name) -> None:
            folder = root / f"{name}-{epoch}"
            model.save_pretrained(folder)
            folders.append(folder)

        train_recipe(task, recipe, on_eval=keep, progress=False)
    return folders
