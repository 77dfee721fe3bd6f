"""The entry points: bad input gives a clear error from hooked_bilinear.errors and writes nothing; the size budget."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import hooked_bilinear as hb
from hooked_bilinear.dashboard import read_data, write_classifier_dashboard, write_dashboard
from hooked_bilinear.dashboard.shipped import heldout_tokens, shipped_saes
from hooked_bilinear.errors import DashboardError, DatasetError, NotBilinearError, SAEError
from hooked_bilinear.sae import TopKSAE
from tests.dashboard.conftest import Built


def refused(path: Path, error: type[Exception], match: str, model: Any, layer: int, **options: Any) -> None:
    """The call raises `error` matching `match`, and nothing is left in path's folder."""
    folder = path.parent
    before = set(folder.iterdir()) if folder.is_dir() else set()
    options.setdefault("tokens", heldout_tokens()[:2])
    with pytest.raises(error, match=match):
        write_dashboard(model, layer, options.pop("tokens"), path, progress=False, **options)
    assert not path.is_file()
    if folder.is_dir():
        assert set(folder.iterdir()) == before


def test_bad_input_is_refused_before_anything_is_written(shipped_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "out.html"
    refused(
        path,
        DashboardError,
        r"layer 2 does not exist: this model has layers 0\.\.1",
        shipped_model,
        2,
        directions=["the"],
    )
    refused(
        path,
        DashboardError,
        r"'zebra' is not a token of this model's vocabulary",
        shipped_model,
        0,
        directions=["zebra"],
    )
    refused(path, DashboardError, r"token id 330 is not in the vocabulary", shipped_model, 0, directions=[330])
    refused(path, DashboardError, "no directions to show", shipped_model, 0)
    refused(
        tmp_path / "missing" / "out.html",
        DashboardError,
        r"output folder .*missing does not exist",
        shipped_model,
        0,
        directions=["the"],
    )
    refused(tmp_path, DashboardError, "is a folder", shipped_model, 0, directions=["the"])
    refused(
        path,
        DatasetError,
        r"token ids must lie in \[0, 330\)",
        shipped_model,
        0,
        directions=["the"],
        tokens=torch.tensor([[1, 400]]),
    )
    sae_in_0, _ = shipped_saes("ts-synthetic-2l", 0)
    refused(
        path,
        SAEError,
        r"reads 'blocks\.0\.mlp\.hook_in'.*needs an SAE on 'blocks\.1\.mlp\.hook_in'",
        shipped_model,
        1,
        directions=["the"],
        sae_in=sae_in_0,
    )
    narrow = TopKSAE(64, 32, k=4, metadata={"hook_name": "blocks.1.mlp.hook_out"})
    refused(
        path,
        SAEError,
        r"reads vectors of size 64, but this MLP's output has size 128",
        shipped_model,
        1,
        features=[0],
        sae_out=narrow,
    )
    refused(path, DashboardError, "no output SAE was given", shipped_model, 1, features=[3])
    refused(
        path,
        DashboardError,
        "feature 999 does not exist",
        shipped_model,
        1,
        features=[999],
        sae_out=shipped_saes("ts-synthetic-2l", 1)[1],
    )


def test_a_gated_layer_is_not_bilinear(checkpoint: Any, tmp_path: Path) -> None:
    folder, _, _ = checkpoint(d_model=16, d_hidden=20, gate="silu", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained(folder)
    refused(
        tmp_path / "out.html",
        NotBilinearError,
        "blocks.0.mlp is a gated MLP",
        model,
        0,
        directions=[1],
        tokens=torch.tensor([[1, 2, 3]]),
    )


def test_written_file_is_one_self_contained_page(built: Built) -> None:
    page = built.path.read_text(encoding="utf-8")
    assert page.count("<script") == 2 and "<script src" not in page and "<link" not in page
    assert "@import" not in page and "url(" not in page
    for address in ("http://", "https://", "//cdn"):
        assert page.replace('"http://www.w3.org/2000/svg"', "").count(address) == 0
    assert read_data(page) == built.data


def test_classifier_output_folder_is_checked(tmp_path: Path) -> None:
    model = hb.vision.from_pretrained("digits")
    with pytest.raises(DashboardError, match="does not exist"):
        write_classifier_dashboard(model, tmp_path / "no" / "digits.html", progress=False)
    with pytest.raises(DashboardError, match="k=0"):
        write_classifier_dashboard(model, tmp_path / "digits.html", k=0, progress=False)
    assert list(tmp_path.iterdir()) == []
