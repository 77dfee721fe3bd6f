"""The Examples blocks of the main entry points' docstrings run, as written, on the shipped checkpoints (doctest).

These are the examples the API reference shows; a changed output or a renamed argument fails here.
"""

from __future__ import annotations

import doctest
import importlib
import warnings

import pytest

ENTRY_POINTS = [
    ("hooked_bilinear.loading.pretrained", "from_pretrained"),
    ("hooked_bilinear.loading.pretrained", "load_model"),
    ("hooked_bilinear.analysis.eigen", "eigendecompose"),
    ("hooked_bilinear.analysis.features", "feature_interactions"),
    ("hooked_bilinear.making.bilinearize", "bilinearize"),
    ("hooked_bilinear.publishing.save", "save_pretrained"),
    ("hooked_bilinear.publishing.hub", "push_to_hub"),
    ("hooked_bilinear.vision.pretrained", "from_pretrained"),
    ("hooked_bilinear.toy.modadd.certify", "certify"),
]


@pytest.mark.parametrize(("module", "name"), ENTRY_POINTS, ids=[f"{m}.{n}" for m, n in ENTRY_POINTS])
def test_docstring_example_runs(module: str, name: str) -> None:
    function = getattr(importlib.import_module(module), name)
    tests = doctest.DocTestFinder(recurse=False).find(function, name, globs={})
    assert tests and tests[0].examples, f"{module}.{name} has no Examples block"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch

        torch.manual_seed(0)
        runner.run(tests[0])
    assert runner.summarize(verbose=False).failed == 0, f"{module}.{name}: its Examples block fails (output above)"
