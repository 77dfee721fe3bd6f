"""Training a one-layer bilinear transformer on (a + b) mod p: full batch AdamW, seeded, stops at a target.

The model is the package's own `BilinearForCausalLM` (current tdooms format) with one layer, no normalization and no
biases, so its logits are exactly a quadratic form of the attention output (see `circuit.py`). Uniform attention is
query and key weights at zero: every score is 0 and the softmax averages the visible positions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from hooked_bilinear.modeling.configuration import BilinearConfig, split_gate_in
from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.publishing.save import save_pretrained
from hooked_bilinear.toy.modadd.task import CONFIG_KEY, ModAddTask


@dataclass(frozen=True)
class ModAddTrainConfig:
    """Model size and optimiser: Nanda et al.'s AdamW (lr 1e-3, weight decay 1.0, betas (0.9, 0.98)), full batch.

    Training stops at the first evaluation where test accuracy >= `target_accuracy` and test loss <= `target_loss`
    (only with `stop_at_target`: otherwise the test set is only watched), or after `max_epochs`. `schedule`: the
    learning rate after warm-up is constant, or decays along a cosine to `min_lr_fraction` of `lr` at `max_epochs`.
    `grad_clip`: the gradient's total norm is clipped to it before each step (None: no clipping). Weights start
    normal with std `init_std` (small: generalises before it memorises). `label_smoothing`: the training loss's
    targets put that mass evenly on every class (the cross-entropy's optimum is then a finite margin, so training
    stops pushing the margins of the pairs it has seen; the reported losses stay plain cross-entropy). `mlp`: the
    bilinear MLP `W_out ((W_gate x) * (W_in x))`, or a plain ReLU MLP `W_out ReLU(W_in x)` of the same width (the
    third paper's system; config.json records it as `bilinear: false, gate: "relu"`).
    """

    d_model: int = 128
    n_head: int = 4
    d_hidden: int = 512
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_epochs: int = 10
    max_epochs: int = 20_000
    target_accuracy: float = 1.0
    target_loss: float = 1e-2
    eval_every: int = 10
    init_std: float = 0.02
    seed: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    stop_at_target: bool = True
    min_lr_fraction: float = 0.0
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    mlp: Literal["bilinear", "relu"] = "bilinear"

    def __post_init__(self) -> None:
        if self.mlp not in ("bilinear", "relu"):
            raise ValueError(f"mlp={self.mlp!r}: pass 'bilinear' (the package's MLP) or 'relu' (a plain ReLU MLP).")
        if not 0.0 <= self.min_lr_fraction <= 1.0:
            raise ValueError(f"min_lr_fraction={self.min_lr_fraction}: pass a fraction of lr between 0 and 1.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip={self.grad_clip}: pass a positive gradient norm, or None for no clipping.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing}: pass a fraction in [0, 1).")


Recipe = tuple[ModAddTrainConfig, ...]
"""A training recipe: its stages run in turn (`train_recipe`); the first builds the model, each later one continues it
with a fresh AdamW of its own (rate, weight decay, epochs)."""

SETUP_TRAINING: dict[str, Recipe] = {
    "nanda": (
        ModAddTrainConfig(init_std=0.05, weight_decay=5.0, label_smoothing=0.05, max_epochs=2000, stop_at_target=False),
        ModAddTrainConfig(init_std=0.05, weight_decay=10.0, label_smoothing=0.05, max_epochs=500, stop_at_target=False),
    ),
    "pizza": (
        ModAddTrainConfig(
            init_std=0.02,
            weight_decay=3.0,
            label_smoothing=0.1,
            schedule="cosine",
            max_epochs=1500,
            stop_at_target=False,
        ),
        ModAddTrainConfig(init_std=0.02, weight_decay=10.0, label_smoothing=0.1, max_epochs=500, stop_at_target=False),
    ),
}
"""The recipes the shipped models were trained with (`hooked-bilinear modadd train --setup ...`), each model the last
epoch of fixed-length stages (issue 16: no test set in the rule). Label smoothing gives the loss a finite optimum,
so the model lifts the pairs at its frequencies' weak spots with more frequencies rather than by memorising them;
weight decay keeps it there. Nanda (init std 0.05: at 0.02 it learns slowly, with loss spikes): smoothing 0.05,
weight decay 5, a constant rate over 2000 epochs. Pizza: smoothing 0.1, weight decay 3, a cosine to 0 over 1500
epochs. Both then run 500 epochs at weight decay 10 and a constant rate, which prunes what the first stage
memorised and what the key frequencies leave out (a decaying rate does the opposite: AdamW's decay shrinks with it)."""


@dataclass
class ModAddHistory:
    """Per evaluation: epoch, train/test loss and accuracy."""

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    reached_target: bool = False

    def then(self, later: ModAddHistory) -> ModAddHistory:
        """This history followed by a later stage's, whose epochs count on from this one's last (the later stage's
        epoch-0 evaluation, the same model as this one's last, is not repeated)."""
        offset = self.epochs[-1] if self.epochs else 0
        keep = [i for i, epoch in enumerate(later.epochs) if epoch > 0 or not self.epochs]

        def on(values: list[float], more: list[float]) -> list[float]:
            return values + [more[i] for i in keep]

        return ModAddHistory(
            epochs=self.epochs + [offset + later.epochs[i] for i in keep],
            train_loss=on(self.train_loss, later.train_loss),
            test_loss=on(self.test_loss, later.test_loss),
            train_accuracy=on(self.train_accuracy, later.train_accuracy),
            test_accuracy=on(self.test_accuracy, later.test_accuracy),
            seconds=self.seconds + later.seconds,
            reached_target=later.reached_target,
        )


def build_modadd_model(task: ModAddTask, config: ModAddTrainConfig = ModAddTrainConfig()) -> BilinearForCausalLM:
    """A freshly initialised one-layer bilinear transformer for `task` (seeded by `config.seed`)."""
    torch.manual_seed(config.seed)
    model_config = BilinearConfig(
        n_layer=1,
        n_head=config.n_head,
        d_model=config.d_model,
        d_hidden=config.d_hidden,
        n_ctx=task.n_pos,
        vocab_size=task.vocab_size,
        bilinear=config.mlp == "bilinear",
        gate=None if config.mlp == "bilinear" else "relu",
        bias=False,
        normalization=False,
        checkpoint_format="current",
        tokenizer=None,
    )
    setattr(model_config, CONFIG_KEY, task.to_config())  # the task record travels in config.json
    model = BilinearForCausalLM(model_config)
    with torch.no_grad():
        for _name, parameter in model.named_parameters():
            parameter.normal_(0.0, config.init_std)
    if task.uniform_attention:
        hold_query_key_at_zero(model)
    return model


def hold_query_key_at_zero(model: BilinearForCausalLM) -> None:
    """Zero the query and key rows of every fused qkv weight: every score is 0 and attention is uniform.

    Training keeps them at exactly zero without a mask: the gradient of W_Q is proportional to the keys and that of
    W_K to the queries, both zero, and decoupled weight decay of zero is zero.
    """
    d_model = model.config.d_model
    with torch.no_grad():
        for block in model.transformer.blocks:
            block.attn.qkv.weight[: 2 * d_model] = 0.0


def learning_rate_factor(config: ModAddTrainConfig, epoch: int) -> float:
    """The learning rate at `epoch` over `config.lr`: linear warm-up, then constant or a cosine down to
    `config.min_lr_fraction` at max_epochs."""
    warmup = min((epoch + 1) / max(config.warmup_epochs, 1), 1.0)
    if config.schedule == "constant":
        return warmup
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(epoch / max(config.max_epochs, 1), 1.0)))
    return warmup * (config.min_lr_fraction + (1.0 - config.min_lr_fraction) * cosine)


def is_relu_mlp(config: BilinearConfig) -> bool:
    """A plain ReLU MLP (`mlp="relu"`) rather than a bilinear one."""
    return not config.bilinear and config.gate == "relu"


def require_modadd_architecture(config: BilinearConfig, reader: str, *, relu: bool = False) -> None:
    """Refuse a model that is not what build_modadd_model builds: one bilinear layer (or, with `relu`, a bilinear or
    a plain ReLU layer), no normalization, no biases."""
    mlp_ok = (config.bilinear and config.gate is None) or (relu and is_relu_mlp(config))
    if config.n_layer != 1 or config.normalization or config.bias or not mlp_ok:
        kinds = "bilinear or ReLU" if relu else "bilinear"
        raise ValueError(
            f"{reader} reads one-layer {kinds} models without normalization or biases (what "
            f"hooked_bilinear.toy.modadd trains); this one has n_layer={config.n_layer}, normalization="
            f"{config.normalization}, bias={config.bias}, bilinear={config.bilinear}, gate={config.gate}."
        )


def answer_logits(model: torch.nn.Module, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch vocab"]:
    """Logits at the last position, where the answer is read."""
    return model(tokens).logits[:, -1]


def uniform_answer_logits(
    model: BilinearForCausalLM, tokens: Int[torch.Tensor, "batch pos"]
) -> Float[torch.Tensor, "batch vocab"]:
    """`answer_logits` of a model with uniform attention, from per-token tables: the same function of the weights,
    3.7x faster per training step on the pizza set-up (`benchmarks/bench_modadd_train.py`).

    With every score 0 the last position reads x = W_E[t_last] + (s / n_pos) sum_j W_O W_V W_E[t_j]. Everything
    linear in x (the MLP's gate and in pre-activations, the direct logits W_U x) is a sum of per-token rows read once
    from the vocabulary, so per input only the product (W_gate x) * (W_in x) (a ReLU MLP: ReLU(W_in x)) and its map
    U' = W_U W_out remain.
    """
    config = model.config
    require_modadd_architecture(config, "uniform_answer_logits", relu=True)
    block = model.transformer.blocks[0]
    d_model = config.d_model
    W_QKV = block.attn.qkv.weight
    if W_QKV[: 2 * d_model].any():
        raise ValueError(
            "this model's query or key weights are not zero, so its attention is not uniform: call answer_logits."
        )
    W_E, W_U, W_gate_in = model.transformer.wte.weight, model.lm_head.weight, block.mlp.w.weight  # [W_gate; W_in]
    OV_E = W_E @ W_QKV[2 * d_model :].T @ block.attn.o.weight.T
    unembed_out = W_U @ block.mlp.down.weight
    rows = [torch.cat([X @ W_gate_in.T, X @ W_U.T], dim=1) for X in (W_E, OV_E)]  # pre-activations, direct logits
    n_pos = tokens.shape[1]
    table = rows[0][tokens[:, -1]] + (config.attn_residual_scale / n_pos) * rows[1][tokens].sum(dim=1)
    width = W_gate_in.shape[0]
    pre, direct = table[:, :width], table[:, width:]
    if not config.bilinear:
        return direct + torch.relu(pre) @ unembed_out.T
    gate, linear = split_gate_in(pre, dim=-1)
    return direct + (gate * linear) @ unembed_out.T


def evaluate_modadd(
    model: BilinearForCausalLM,
    tokens: Int[torch.Tensor, "batch pos"],
    labels: Int[torch.Tensor, " batch"],
    logits_of: Callable[[BilinearForCausalLM, torch.Tensor], torch.Tensor] = answer_logits,
) -> tuple[float, float]:
    """(cross-entropy loss, accuracy) of the answers."""
    with torch.no_grad():
        logits = logits_of(model, tokens).double()
    return F.cross_entropy(logits, labels).item(), (logits.argmax(-1) == labels).double().mean().item()


def train_modadd(
    task: ModAddTask,
    config: ModAddTrainConfig = ModAddTrainConfig(),
    *,
    on_eval: Callable[[int, BilinearForCausalLM], None] | None = None,
    progress: bool = True,
    model: BilinearForCausalLM | None = None,
) -> tuple[BilinearForCausalLM, ModAddHistory]:
    """Train a fresh model on `task` (or continue `model`, with a fresh optimizer); `on_eval(epoch, model)` is called
    at every evaluation (e.g. to save snapshots).

    Deterministic for a given (task, config) on a given machine: the split, the init and full-batch steps are seeded.

    Args:
        task: the modular-addition task (p, input format, train fraction, split seed).
        config: the training configuration (default `ModAddTrainConfig()`): sizes, init, optimizer, schedule, epochs,
            evaluation interval and the test targets that stop training early.
        on_eval: called as `on_eval(epoch, model)` at every evaluation (default: none).
        progress: show a progress bar (default True).
        model: a model to continue training (default: a fresh one built from `config`).

    Returns:
        (model, history): the trained model in eval mode, and a `ModAddHistory` of the evaluations (with the seconds
        taken and whether the test targets were reached).
    """
    if model is None:
        model = build_modadd_model(task, config)
    elif task.uniform_attention:
        hold_query_key_at_zero(model)
    tokens, labels = task.tokens(), task.labels()
    train_rows, test_rows = task.split()
    logits_of = uniform_answer_logits if task.uniform_attention else answer_logits
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: learning_rate_factor(config, e))
    history = ModAddHistory()
    start = time.perf_counter()
    bar = tqdm(range(config.max_epochs + 1), desc=f"modadd p={task.p}", disable=not progress)
    for epoch in bar:
        if epoch % config.eval_every == 0 or epoch == config.max_epochs:
            model.eval()
            train_loss, train_accuracy = evaluate_modadd(model, tokens[train_rows], labels[train_rows], logits_of)
            test_loss, test_accuracy = evaluate_modadd(model, tokens[test_rows], labels[test_rows], logits_of)
            for name, value in (
                ("epochs", epoch),
                ("train_loss", train_loss),
                ("test_loss", test_loss),
                ("train_accuracy", train_accuracy),
                ("test_accuracy", test_accuracy),
            ):
                getattr(history, name).append(value)
            bar.set_postfix(
                train_loss=f"{train_loss:.3g}",
                test_loss=f"{test_loss:.3g}",
                train_acc=f"{train_accuracy:.3f}",
                test_acc=f"{test_accuracy:.3f}",
            )
            if on_eval is not None:
                on_eval(epoch, model)
            if config.stop_at_target and test_accuracy >= config.target_accuracy and test_loss <= config.target_loss:
                history.reached_target = True
                break
            model.train()
        if epoch == config.max_epochs:
            break
        with torch.enable_grad():  # a caller's no_grad (an analysis script) must not stop training
            loss = F.cross_entropy(
                logits_of(model, tokens[train_rows]), labels[train_rows], label_smoothing=config.label_smoothing
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
    bar.close()
    history.seconds = time.perf_counter() - start
    return model.eval(), history


def train_recipe(
    task: ModAddTask,
    recipe: Recipe,
    *,
    on_eval: Callable[[int, BilinearForCausalLM], None] | None = None,
    progress: bool = True,
) -> tuple[BilinearForCausalLM, ModAddHistory]:
    """Train through the recipe's stages in turn (`train_modadd` each): the first builds the model from its seed and
    init, each later one continues it with a fresh AdamW. Epochs, in the history and for `on_eval`, count on across
    stages. A later stage's sizes must be the first's (its init_std and seed are not used). Every stage runs: one
    that stops at its test target ends itself, not the recipe (`reached_target` is the last stage's).

    Args:
        task: the modular-addition task.
        recipe: the stages, a tuple of `ModAddTrainConfig`.
        on_eval: called as `on_eval(epoch, model)` at every evaluation, epochs counted across stages (default: none).
        progress: show a progress bar per stage (default True).

    Returns:
        (model, history): the model after the last stage, and the stages' histories joined.

    Raises:
        ValueError: the recipe is empty, or a later stage's d_model, n_head, d_hidden or mlp differs from the first's.
    """
    if not recipe:
        raise ValueError("an empty recipe: pass at least one ModAddTrainConfig.")
    sizes = {name: getattr(recipe[0], name) for name in ("d_model", "n_head", "d_hidden", "mlp")}
    for number, stage in enumerate(recipe[1:], start=2):
        other = {name: getattr(stage, name) for name in sizes}
        if other != sizes:
            raise ValueError(
                f"stage {number} has sizes {other} but continues the first stage's model {sizes}: give every stage "
                "the first one's d_model, n_head, d_hidden and mlp."
            )
    model, history = train_modadd(task, recipe[0], on_eval=on_eval, progress=progress)
    for stage in recipe[1:]:
        offset = history.epochs[-1]

        def shifted(epoch: int, current: BilinearForCausalLM, offset: int = offset) -> None:
            if on_eval is not None and epoch > 0:  # a later stage's epoch 0 is the stage before's last
                on_eval(offset + epoch, current)

        model, part = train_modadd(task, stage, model=model, on_eval=shifted, progress=progress)
        history = history.then(part)
    return model, history


def save_model(
    model: BilinearForCausalLM,
    folder: str | Path,
    history: ModAddHistory,
    recipe: Recipe | ModAddTrainConfig,
    *,
    overwrite: bool = False,
) -> Path:
    """A checkpoint folder `from_pretrained` loads: config.json (with the task record), model.safetensors, a model
    card, and TRAINING.json (the recipe's stages, one for a lone config, the epochs run in all and the final
    evaluation).

    Args:
        model: the trained modular-addition model.
        folder: the folder to write.
        history: its training history (`train_modadd` / `train_recipe`).
        recipe: the recipe it was trained with, or a lone `ModAddTrainConfig`.
        overwrite: replace an existing folder (default False).

    Returns:
        The folder's path.

    Raises:
        PublishError: the folder exists and `overwrite` is false, or it cannot be written.
    """
    task = ModAddTask.from_config(model.config)
    stages = [asdict(stage) for stage in ((recipe,) if isinstance(recipe, ModAddTrainConfig) else recipe)]
    folder = save_pretrained(model, folder, overwrite=overwrite, as_llama=False, token_ids_only=True)
    record = {
        "task": task.to_config(),
        "stages": stages,
        "epochs": history.epochs[-1],
        "seconds": round(history.seconds, 1),
        "reached_target": history.reached_target,
        "train_loss": history.train_loss[-1],
        "test_loss": history.test_loss[-1],
        "train_accuracy": history.train_accuracy[-1],
        "test_accuracy": history.test_accuracy[-1],
    }
    (folder / "TRAINING.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder
