"""Format detection from config.json alone, and the config's derived constants."""

from __future__ import annotations

import math

import pytest

import hooked_bilinear as hb
from hooked_bilinear.modeling.configuration import config_from_dict
from tests.reference import make_config


def test_detects_current_and_legacy():
    assert hb.detect_format(make_config("current")) == "current"
    assert hb.detect_format(make_config("legacy")) == "legacy"
    legacy = make_config("legacy")
    del legacy["n_vocab"]
    legacy["gate"] = True  # a bool gate alone marks the legacy format
    assert hb.detect_format(legacy) == "legacy"
    missing = make_config("current")
    del missing["model_type"]  # absent model_type is as good as empty
    assert hb.detect_format(missing) == "current"


def test_unknown_format_names_missing_keys():
    with pytest.raises(hb.CheckpointFormatError, match=r"missing \['n_layer', 'n_head'"):
        hb.detect_format({"hidden_size": 4})


def test_derived_constants():
    current = config_from_dict(make_config("current", n_layer=6), vocab_size=10)
    legacy = config_from_dict(make_config("legacy", gate=True), vocab_size=50)
    assert current.attn_residual_scale == pytest.approx(1 / math.sqrt(12)) and legacy.attn_residual_scale == 1.0
    assert (current.mlp_down_name, legacy.mlp_down_name) == ("p", "o")
    assert (current.norm_has_params, legacy.norm_has_params) == (False, True)
    assert legacy.gate == "relu" and legacy.tokenizer == "tdooms/TinyStories-50"


def test_odd_head_size_refused():
    with pytest.raises(hb.CheckpointFormatError, match="odd"):
        hb.BilinearConfig(d_model=12, n_head=4)
