"""Every public function x bad arguments (table-driven): a wrong type or an out-of-range index is an error that names
the argument and what it accepts, never a bare TypeError / IndexError from deep inside torch.

Public functions: the functions in `__all__` of the package and of its public subpackages (`PACKAGES`). The type
table is built from their signatures: each annotated parameter, passed alone an object of no accepted type."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import pytest
import torch
from beartype.roar import BeartypeCallHintViolation

import hooked_bilinear as hb
from hooked_bilinear import analysis as A
from hooked_bilinear import sae as S
from hooked_bilinear import vision as V
from hooked_bilinear.activations import ActivationStore
from hooked_bilinear.errors import HookedBilinearError

PACKAGES = ["hooked_bilinear", "hooked_bilinear.analysis", "hooked_bilinear.sae", "hooked_bilinear.vision"]


class Wrong:
    """A value of no type any public function accepts."""

    def __repr__(self) -> str:
        return "<Wrong>"


def public_functions() -> list[tuple[str, Any]]:
    found = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value):
                found.append((f"{package}.{name}", value))
    return found


def typed_parameters(function: Any) -> list[str]:
    """Parameters whose annotation rules some values out (not Any, not untyped, not **options)."""
    names = []
    for parameter in inspect.signature(function).parameters.values():
        annotation = parameter.annotation
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) or annotation is parameter.empty:
            continue
        if text in ("Any", "typing.Any") or annotation is Any or re.search(r"\bAny\b", str(text)) and "|" in str(text):
            continue
        names.append(parameter.name)
    return names


def package_of(function: Any) -> str:
    return next(p for p in reversed(PACKAGES) if function in vars(importlib.import_module(p)).values()).split(".")[-1]


TYPE_CASES = [
    pytest.param(function, parameter, id=f"{name}({parameter}=<Wrong>)")
    for name, function in public_functions()
    for parameter in typed_parameters(function)
]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """A value of the right type (and consistent shapes) for every required parameter, by (package, name)."""
    bridge = hb.from_pretrained("ts-synthetic-2l")
    mlp = bridge.blocks[0].mlp
    factors = mlp.factors()
    d = factors.d_out
    classifier = V.from_pretrained("digits")
    sae_in, sae_out = S.load("ts-synthetic-2l/blocks.0.mlp.hook_in"), S.load("ts-synthetic-2l/blocks.0.mlp.hook_out")
    folder = tmp_path_factory.mktemp("bad-arguments")
    tokens = torch.randint(0, 10, (1, 4))
    basis = torch.randn(2, d)
    analysis = {
        "basis": basis,
        "eigenvalues": torch.randn(2, 8),
        "factors": factors,
        "interactions": torch.randn(4, 4),
        "k": 2,
        "ks": [1],
        "lambda_": torch.randn(2, 8),
        "layer": 0,
        "mlp": mlp,
        "model": bridge,
        "module": mlp,
        "r": 2,
        "sae": sae_in,
        "sae_out": sae_out,
        "tokenizer": None,
        "tokens": tokens,
        "truncated": A.truncate(factors, basis, 2),
        "u": torch.randn(d),
        "v": torch.randn(d),
        "v_a": torch.randn(2, d),
        "v_b": torch.randn(2, d),
        "values": torch.randn(1, 4),
        "vectors": basis,
        "x": torch.randn(3, d),
    }
    package = {
        "config": {},
        "data": tokens,
        "folder": folder / "out",
        "model": None,
        "model_or_path": "none",
        "name_or_path": "none",
        "repo_id": "someone/none",
    }
    sae = {
        "activations": torch.randn(8, d),
        "ctx": 4,
        "folder": folder / "sae",
        "hook_name": "blocks.0.mlp.hook_in",
        "model": bridge,
        "obj": None,
        "path_or_hub_id": "none",
        "sae": sae_in,
        "source": ActivationStore(bridge, torch.randint(0, 10, (2, 8)), "blocks.0.mlp.hook_in"),
        "configs": S.SAETrainConfig(steps=1, batch_size=4),
        "texts": ["a"],
        "tokenizer": None,
        "tokens": tokens,
    }
    config = V.VisionConfig()
    vision = {
        "a": classifier,
        "b": classifier,
        "config": config,
        "folder": folder / "vision",
        "history": V.TrainingHistory(),
        "ks": [1],
        "labels": torch.zeros(3, dtype=torch.long),
        "mask": torch.zeros(64),
        "model": classifier,
        "module": None,
        "name": "digits",
        "norms": [1.0],
        "path": folder / "none",
        "pixels": torch.rand(3, 64),
        "split": V.load_split(config),
        "stds": [0.1],
        "target": 0,
        "train_pixels": torch.rand(5, 64),
    }
    table = {
        (kind, name): value
        for kind, values in [("analysis", analysis), ("hooked_bilinear", package), ("sae", sae), ("vision", vision)]
        for name, value in values.items()
    }
    table["explain_input", "pixels"] = torch.rand(64)  # one image
    return table


def arguments(function: Any, parameter: str, good: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Good values for the other required parameters, and a Wrong one for `parameter`."""
    package = package_of(function)
    values = {}
    for other in inspect.signature(function).parameters.values():
        if other.name == parameter:
            values[other.name] = Wrong()
        elif other.default is other.empty and other.kind not in (other.VAR_KEYWORD, other.VAR_POSITIONAL):
            key = (function.__name__, other.name) if (function.__name__, other.name) in good else (package, other.name)
            values[other.name] = good[key]
    return values


@pytest.mark.parametrize("function, parameter", TYPE_CASES)
def test_a_wrong_type_names_the_argument_and_what_it_accepts(function: Any, parameter: str, good) -> None:
    with pytest.raises((BeartypeCallHintViolation, HookedBilinearError, TypeError, ValueError)) as caught:
        function(**arguments(function, parameter, good))
    message = str(caught.value)
    assert re.search(rf"\b{parameter}\b", message), message  # the argument, by name
    assert "<Wrong>" in message or "Wrong" in message, message  # what was passed


BIG = 10**6
# (call, the argument the error must name): an index or count out of range, tokens outside the vocabulary
RANGE_CASES: list[tuple[str, Any, str]] = [
    ("mlp_factors layer", lambda g: A.mlp_factors(g["analysis", "model"], 7), "layer"),
    ("replace_mlp layer", lambda g: A.replace_mlp(g["analysis", "model"], 7, g["analysis", "mlp"]), "layer"),
    (
        "truncation_curve layer",
        lambda g: A.truncation_curve(
            g["analysis", "model"], 7, g["analysis", "truncated"], g["analysis", "tokens"], [1], progress=False
        ),
        "layer",
    ),
    (
        "eigenvector_activations layer",
        lambda g: A.eigenvector_activations(g["analysis", "model"], -1, g["analysis", "v"], g["analysis", "tokens"]),
        "layer",
    ),
    (
        "eigenvector_activations tokens",
        lambda g: A.eigenvector_activations(
            g["analysis", "model"], 0, g["analysis", "v"], torch.full((1, 3), BIG, dtype=torch.long)
        ),
        "tokens",
    ),
    (
        "feature_activations tokens",
        lambda g: A.feature_activations(g["analysis", "model"], g["analysis", "sae"], torch.full((1, 3), BIG)),
        "tokens",
    ),
    (
        "cache_activations tokens",
        lambda g: S.cache_activations(g["sae", "model"], torch.full((1, 3), -1), "blocks.0.mlp.hook_in"),
        "tokens",
    ),
    ("top_tokens k", lambda g: A.top_tokens(g["analysis", "model"], g["analysis", "vectors"], k=-1), "k"),
    ("top_tokens layer", lambda g: A.top_tokens(g["analysis", "model"], g["analysis", "vectors"], layer=7), "layer"),
    ("output_feature_directions", lambda g: A.output_feature_directions(g["analysis", "sae_out"], [BIG]), "feature"),
    ("output_feature_offsets", lambda g: A.output_feature_offsets(g["analysis", "sae_out"], [-1]), "feature"),
    ("unembedding_directions", lambda g: A.unembedding_directions(g["analysis", "model"], [BIG]), "tokens"),
    ("contrast_directions", lambda g: A.contrast_directions(g["analysis", "model"], [BIG]), "tokens"),
    ("eigendecompose k", lambda g: A.eigendecompose(g["analysis", "factors"], g["analysis", "u"], BIG), "k"),
    ("hosvd r", lambda g: A.hosvd(g["analysis", "factors"], BIG), "r"),
    ("truncate k", lambda g: A.truncate(g["analysis", "factors"], g["analysis", "basis"], BIG), "k"),
    ("spectrum_stats k", lambda g: A.spectrum_stats(g["analysis", "lambda_"], k=0), "k"),
    ("top_interactions k", lambda g: A.top_interactions(g["analysis", "interactions"], k=-1), "k"),
    (
        "top_examples k",
        lambda g: A.top_examples(None, g["analysis", "tokens"], g["analysis", "values"], k=-1),
        "k",
    ),
    ("adversarial_mask target", lambda g: V.adversarial_mask(g["vision", "model"], 12), "target"),
    ("eigen_images k", lambda g: V.eigen_images(g["vision", "model"], k=BIG), "k"),
    ("eigen_image_similarity k", lambda g: V.eigen_image_similarity(g["vision", "a"], g["vision", "b"], k=BIG), "k"),
    (
        "accuracy labels",
        lambda g: V.accuracy(g["vision", "model"], g["vision", "pixels"], torch.full((3,), 12)),
        "labels",
    ),
]


@pytest.mark.parametrize("call, argument", [pytest.param(c, a, id=i) for i, c, a in RANGE_CASES])
def test_an_out_of_range_index_names_the_argument(call: Any, argument: str, good) -> None:
    with pytest.raises((HookedBilinearError, ValueError, IndexError)) as caught:
        call(good)
    message = str(caught.value)
    assert argument in message, message
    assert "out of range in self" not in message and "out of bounds" not in message, message
