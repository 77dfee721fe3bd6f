"""The entry points: a language model's layer, or an image classifier, to one self-contained HTML dashboard.

Every input is checked before any work and before anything is written (the output folder, the layer, that its MLP
is bilinear, the token set, the SAEs' hooks and widths, the directions); the page is written atomically at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from beartype import beartype
from tqdm.auto import tqdm

from hooked_bilinear.dashboard.classifier import classifier_data
from hooked_bilinear.dashboard.data import (
    check_layer,
    check_sae,
    check_tokens,
    direction_data,
    feature_offsets,
    layer_factors,
    resolve_directions,
    token_pass,
    vocabulary,
)
from hooked_bilinear.dashboard.html import check_output, render, write_page
from hooked_bilinear.errors import DashboardError
from hooked_bilinear.vision.model import BilinearClassifier


class DashboardFile(NamedTuple):
    """A written dashboard: its path, size in bytes, generation time in seconds, and how many directions (or
    classes) it shows."""

    path: str
    size_bytes: int
    seconds: float
    n_directions: int


@beartype
def write_dashboard(
    model: Any,
    layer: int,
    tokens: torch.Tensor,
    path: str | os.PathLike,
    *,
    directions: Sequence[str | int] | None = None,
    features: Sequence[int] | None = None,
    sae_in: Any = None,
    sae_out: Any = None,
    contrast: bool = True,
    k: int = 8,
    n_contexts: int = 10,
    token_set: str = "the token set given",
    title: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> DashboardFile:
    """Write the dashboard of layer `layer`'s bilinear MLP of `model` (a hooked bridge) to `path` (one HTML file).

    Args:
        model: a TransformerBridge (e.g. `hooked_bilinear.from_pretrained("ts-synthetic-2l")`).
        layer: the block whose MLP is read.
        tokens: the token set [n_seq, pos] of the one pass (top contexts, shares, histograms).
        path: the HTML file to write; its folder must exist.
        directions: tokens (strings as the tokenizer writes them, or ids) whose output directions are shown.
        features: output features of `sae_out` (an SAE on `blocks.{layer}.mlp.hook_out`) to show.
        sae_in: an SAE on `blocks.{layer}.mlp.hook_in`: adds each output feature's input-feature interactions.
        sae_out: the output SAE the features belong to.
        contrast: token directions as contrasts (`contrast_directions`, default) or raw (`unembedding_directions`).
        k: eigenvectors shown per direction (the k/2 largest positive and k/2 most negative eigenvalues).
        n_contexts: top and as many bottom contexts per eigenvector.
        token_set: how the page describes the token set.
        title: the page title (default: model and layer).
        batch_size: sequences per forward pass.
        progress: tqdm bars for the pass and the directions.

    Returns:
        The path, size, generation time and number of directions.

    Raises:
        DashboardError: the output folder is missing, the layer does not exist, a direction is not in the
            vocabulary, or no direction was asked for.
        NotBilinearError: the layer's MLP is not bilinear.
        SAEError: an SAE reads another hook or another width.
        DatasetError: tokens outside the vocabulary or not [n_seq, pos].
    """
    started = time.perf_counter()
    target = check_output(path)
    check_layer(model, layer)
    factors = layer_factors(model, layer)
    check_tokens(model, tokens)
    if not 1 <= k <= factors.d_in:
        raise DashboardError(f"k={k} eigenvectors per direction: pass 1 <= k <= {factors.d_in}.")
    if n_contexts < 1:
        raise DashboardError(f"n_contexts={n_contexts}: pass at least 1.")
    for sae, side in ((sae_in, "input"), (sae_out, "output")):
        if sae is not None:
            check_sae(sae, factors, layer, side)
    chosen = resolve_directions(model, directions, contrast=contrast, features=features, sae_out=sae_out)
    offsets = feature_offsets(sae_out, chosen) if sae_out is not None else {}
    tokens = tokens.to(factors.device)
    cached = token_pass(model, layer, tokens, sae_in=sae_in, batch_size=batch_size, progress=progress)
    used: set[int] = set()
    shown = []
    for direction in tqdm(chosen, desc="dashboard directions", unit="dir", disable=not progress):
        shown.append(
            direction_data(
                model,
                layer,
                factors,
                direction,
                tokens,
                cached,
                k=k,
                n_contexts=n_contexts,
                used=used,
                sae_in=sae_in,
                offset=offsets.get(direction.label),
            )
        )
    name = str(getattr(model.cfg, "model_name", "") or "model")
    data = {
        "kind": "lm",
        "model": name,
        "layer": layer,
        "k": k,
        "token_set": {
            "n_seq": int(tokens.shape[0]),
            "n_pos": int(tokens.shape[1]),
            "n_tokens": int(tokens.numel()),
            "description": token_set,
        },
        "saes": {
            "input": getattr(sae_in, "hook_name", None) if sae_in is not None else None,
            "output": getattr(sae_out, "hook_name", None) if sae_out is not None else None,
        },
        "directions": shown,
        "vocab": vocabulary(model, used),
    }
    meta = f"{name} · blocks.{layer}.mlp · {len(shown)} directions · {tokens.numel()} tokens ({token_set})"
    size = write_page(render(data, title or f"{name} layer {layer}: eigen-features", meta), target)
    return DashboardFile(str(target), size, time.perf_counter() - started, len(shown))


@beartype
def write_classifier_dashboard(
    model: BilinearClassifier,
    path: str | os.PathLike,
    *,
    k: int = 8,
    root: str | os.PathLike | None = None,
    title: str | None = None,
    progress: bool = True,
) -> DashboardFile:
    """Write the dashboard of a bilinear image classifier: per class, its spectrum, eigen-images with their
    eigenvalues and the test images that drive them, and the adversarial masks (one HTML file).

    Args:
        model: a `BilinearClassifier` (e.g. `hooked_bilinear.vision.from_pretrained("digits")`).
        path: the HTML file to write; its folder must exist.
        k: eigen-images shown per class (the k/2 largest positive and k/2 most negative eigenvalues).
        root: the data folder for MNIST / Fashion-MNIST models (see `vision.load_split`).
        title: the page title.
        progress: a tqdm bar over the classes.

    Returns:
        The path, size, generation time and number of classes.

    Raises:
        DashboardError: the output folder is missing or k is out of range.
    """
    started = time.perf_counter()
    target = check_output(path)
    d_in = model.mlp.factors().d_in
    if not 1 <= k <= d_in:
        raise DashboardError(f"k={k} eigen-images per class: pass 1 <= k <= {d_in}.")
    n_classes = model.config.n_classes
    with tqdm(total=n_classes, desc="dashboard classes", unit="class", disable=not progress) as bar:
        data = classifier_data(model, k=k, root=root, progress=bar)
    name = model.config.dataset
    meta = f"bilinear classifier · {name} · {n_classes} classes · test accuracy {100 * data['test_accuracy']:.1f}%"
    size = write_page(render(data, title or f"{name} classifier: eigen-images", meta), target)
    return DashboardFile(str(target), size, time.perf_counter() - started, n_classes)
