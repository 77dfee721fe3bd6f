"""A shipped name given to the loader of another kind says which loader takes it; an unknown SAE name lists the
shipped SAEs before suggesting a download."""

from __future__ import annotations

import pytest

import hooked_bilinear as hb
from hooked_bilinear import sae as S
from hooked_bilinear import vision as V
from hooked_bilinear.errors import CheckpointNotFoundError, SAEError
from hooked_bilinear.loading.shipped import shipped_kind

SAE_NAME = "ts-synthetic-2l/blocks.0.mlp.hook_in"


@pytest.mark.parametrize(
    "load, name, error, loader",
    [
        (hb.from_pretrained, "digits", CheckpointNotFoundError, "hooked_bilinear.vision.from_pretrained('digits')"),
        (hb.load_model, "digits-noreg", CheckpointNotFoundError, "hooked_bilinear.vision.from_pretrained"),
        (hb.from_pretrained, SAE_NAME, CheckpointNotFoundError, f"hooked_bilinear.sae.load('{SAE_NAME}')"),
        (S.load, "ts-synthetic-2l", SAEError, "hooked_bilinear.from_pretrained('ts-synthetic-2l')"),
        (S.load, "digits", SAEError, "hooked_bilinear.vision.from_pretrained('digits')"),
        (V.from_pretrained, "ts-synthetic-2l", CheckpointNotFoundError, "hooked_bilinear.from_pretrained"),
        (V.from_pretrained, SAE_NAME, CheckpointNotFoundError, "hooked_bilinear.sae.load"),
    ],
)
def test_a_shipped_name_of_another_kind_names_its_loader(load, name, error, loader) -> None:
    with pytest.raises(error, match="is a shipped") as caught:
        load(name)
    assert loader in str(caught.value)


def test_an_unknown_sae_lists_the_shipped_ones_before_the_download() -> None:
    with pytest.raises(SAEError) as caught:
        S.load("someone/no-such-sae")
    message = str(caught.value)
    assert all(name in message for name in S.shipped())
    assert message.index(S.shipped()[0]) < message.index("Hugging Face")


def test_shipped_kind_reads_the_package_folders_only() -> None:
    assert shipped_kind("ts-synthetic-2l") == "language model"
    assert shipped_kind("digits") == "image classifier"
    assert shipped_kind(SAE_NAME) == "SAE"
    assert shipped_kind("../checkpoints/digits") is None and shipped_kind("nothing") is None
