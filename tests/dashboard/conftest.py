"""One small dashboard of the shipped ts-synthetic-2l (layer 1: three token contrasts, two SAE output features with
the input SAE's interactions) on a slice of its held-out stories, written once for the module's tests."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import hooked_bilinear as hb
from hooked_bilinear.dashboard import data, read_data, write_classifier_dashboard, write_dashboard
from hooked_bilinear.dashboard.shipped import heldout_tokens, shipped_saes

LAYER = 1
TOKENS = ["the", "named", ","]
FEATURES = [237, 157]
K = 4
CONTEXTS = 3


class Built(NamedTuple):
    model: Any
    tokens: torch.Tensor
    sae_in: Any
    sae_out: Any
    path: Path
    data: dict


@pytest.fixture(scope="session")
def shipped_model() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hb.from_pretrained("ts-synthetic-2l")


@pytest.fixture(scope="session")
def built(shipped_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Built:
    tokens = heldout_tokens()[:12]
    sae_in, sae_out = shipped_saes("ts-synthetic-2l", LAYER)
    path = tmp_path_factory.mktemp("dashboard") / "layer1.html"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "POSITION_CHUNK", 500)  # 12 x 128 positions in four uneven blocks
        write_dashboard(
            shipped_model,
            LAYER,
            tokens,
            path,
            directions=TOKENS,
            features=FEATURES,
            sae_in=sae_in,
            sae_out=sae_out,
            k=K,
            n_contexts=CONTEXTS,
            progress=False,
        )
    return Built(shipped_model, tokens, sae_in, sae_out, path, read_data(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def digits_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, dict]:
    model = hb.vision.from_pretrained("digits")
    path = tmp_path_factory.mktemp("dashboard") / "digits.html"
    write_classifier_dashboard(model, path, k=4, progress=False)
    return model, path, read_data(path.read_text(encoding="utf-8"))
