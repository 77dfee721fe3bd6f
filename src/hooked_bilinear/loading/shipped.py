"""What is shipped inside the package, by kind, so that each loader can point a name of another kind to its loader."""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"

#: kind -> (the folder file that marks one, where they lie, the loader that takes them)
KINDS = {
    "language model": ("config.json", CHECKPOINTS, "hooked_bilinear.from_pretrained"),
    "image classifier": ("config.json", CHECKPOINTS / "vision", "hooked_bilinear.vision.from_pretrained"),
    "SAE": ("cfg.json", CHECKPOINTS / "saes", "hooked_bilinear.sae.load"),
}


def shipped_kind(name: str) -> str | None:
    """The kind of shipped thing `name` names ("language model", "image classifier", "SAE"), or None."""
    if not name or name.startswith((".", "/", "~")) or ".." in Path(name).parts:
        return None
    for kind, (marker, root, _) in KINDS.items():
        if (root / name / marker).is_file():
            return kind
    return None


def loader_hint(name: object, kind: str) -> str:
    """A sentence pointing to the right loader when `name` is a shipped thing of another kind than `kind`; else ''."""
    found = shipped_kind(name) if isinstance(name, str) else None
    if found is None or found == kind:
        return ""
    loader = KINDS[found][2]
    article = "an" if kind[0] in "aeiouAEIOUS" else "a"  # an SAE, an image classifier
    return f"{name!r} is a shipped {found}, not {article} {kind}: load it with {loader}({name!r}). "
