"""SAELens interoperability, both ways, bit for bit (run by scripts/check_saelens.sh, not by the suite).

    python scripts/check_saelens.py write --work DIR     # this package's venv: our folders + our encode / decode
    python scripts/check_saelens.py saelens --work DIR   # SAELens's venv: load ours and compare; write SAELens folders
    python scripts/check_saelens.py read --work DIR      # this package's venv: load SAELens's and compare

SAELens 6 needs transformer-lens < 4, so the two sides run in separate environments and talk through the folders
and a file of inputs and expected outputs. Each side exits non-zero on any difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

SEED = 0


def random_weights(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter random (a threshold non-negative), so that biases and thresholds matter in the comparison."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
            if "threshold" in name:
                parameter.abs_()


def codes(sae: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        f = sae.encode(x)
        return {"x": x, "f": f, "x_hat": sae.decode(f)}


def compare(kind: str, folder: Path, sae: Any, expected: dict[str, torch.Tensor]) -> bool:
    got = codes(sae, expected["x"])
    same = all(torch.equal(got[key], expected[key]) for key in ("f", "x_hat"))
    print(f"{'same' if same else 'DIFFERENT':9} {kind:18} {type(sae).__name__:12} {folder.name}")
    return same


def write_ours(work: Path) -> None:
    from hooked_bilinear import sae as S

    generator = torch.Generator().manual_seed(SEED)
    saes: dict[str, Any] = {name.replace("/", "__"): S.load(name) for name in S.shipped()}
    for cls in (S.TopKSAE, S.ReLUSAE, S.JumpReLUSAE):
        sae = cls(16, 48)
        random_weights(sae, generator)
        saes[cls.__name__] = sae
    expected = {}
    for name, sae in saes.items():
        S.save(sae, work / "ours" / name)
        expected[name] = codes(sae, 3 * torch.randn(64, sae.W_enc.shape[0], generator=generator))
    torch.save(expected, work / "ours.pt")


def expected_codes(path: Path, step: str) -> dict[str, dict[str, torch.Tensor]]:
    """The inputs and outputs an earlier step saved; a clear error when that step has not run on this --work folder."""
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `check_saelens.py {step} --work {path.parent}` first.")
    return torch.load(path)


def saelens_side(work: Path) -> bool:
    import sae_lens
    from sae_lens import SAE, JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    ok = True
    for name, expected in expected_codes(work / "ours.pt", "write").items():
        ok &= compare(
            f"SAELens {sae_lens.__version__} read",
            work / "ours" / name,
            SAE.load_from_disk(str(work / "ours" / name)),
            expected,
        )
    generator = torch.Generator().manual_seed(SEED + 1)
    theirs = {}
    for cls, config in (
        (TopKSAE, TopKSAEConfig(d_in=16, d_sae=40, k=5)),
        (StandardSAE, StandardSAEConfig(d_in=16, d_sae=40)),
        (JumpReLUSAE, JumpReLUSAEConfig(d_in=16, d_sae=40)),
    ):
        sae = cls(config)
        random_weights(sae, generator)
        sae.save_model(str(work / "theirs" / cls.__name__))
        theirs[cls.__name__] = codes(sae, 3 * torch.randn(32, 16, generator=generator))
    torch.save(theirs, work / "theirs.pt")
    return ok


def read_theirs(work: Path) -> bool:
    from hooked_bilinear import sae as S

    ok = True
    for name, expected in expected_codes(work / "theirs.pt", "saelens").items():
        ok &= compare("hooked_bilinear read", work / "theirs" / name, S.load(work / "theirs" / name), expected)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("side", choices=["write", "saelens", "read"])
    parser.add_argument("--work", type=Path, required=True, help="folder shared by the two environments")
    args = parser.parse_args()
    if args.side == "write":
        write_ours(args.work)
    elif not (saelens_side if args.side == "saelens" else read_theirs)(args.work):
        raise SystemExit("SAE folders differ between SAELens and hooked_bilinear (see DIFFERENT above).")


if __name__ == "__main__":
    main()
