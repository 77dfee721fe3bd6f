"""Every public function (the `__all__` of the package and its public subpackages) has a Google-style docstring:
an Args section when it takes arguments and a Returns section when it returns something, which the API reference
renders. Classes have a docstring of their own.
"""

from __future__ import annotations

import importlib
import inspect
import types
from typing import Any

PUBLIC_PACKAGES = [
    "hooked_bilinear",
    "hooked_bilinear.analysis",
    "hooked_bilinear.sae",
    "hooked_bilinear.vision",
    "hooked_bilinear.toy.modadd",
    "hooked_bilinear.dashboard",
    "hooked_bilinear.activations",
]


def missing_sections(value: Any) -> list[str]:
    """What a public function's or class's docstring lacks."""
    doc = inspect.getdoc(value) or ""
    if inspect.isclass(value):
        return [] if doc and doc != inspect.getdoc(value.__mro__[1]) else ["docstring"]
    if not doc:
        return ["docstring"]
    signature = inspect.signature(value)
    missing = []
    if any(name != "self" for name in signature.parameters) and "Args:" not in doc:
        missing.append("Args")
    if signature.return_annotation not in (None, "None", inspect.Signature.empty) and "Returns:" not in doc:
        missing.append("Returns")
    return missing


def public_objects() -> dict[str, object]:
    found: dict[str, object] = {}
    for package in PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if not isinstance(value, types.ModuleType) and (inspect.isfunction(value) or inspect.isclass(value)):
                found.setdefault(f"{package}.{name}".removeprefix("hooked_bilinear."), value)
    return found


def test_public_docstrings_have_their_sections() -> None:
    objects = public_objects()
    assert len(objects) > 100
    gaps = {name: lacking for name, value in objects.items() if (lacking := missing_sections(value))}
    assert not gaps, f"public names whose docstrings lack sections: {gaps}"
