"""Issue 32: why no margin bound linear in a ReLU pizza model's parameters certifies its inputs, measured.

    python scripts/modadd_relu_linear_limits.py [--models modadd-relu-p59 out/.../relu-p113 ...] [--harmonics 2]

A diagnostic in float64 over all p^2 inputs, not a certificate (no interval arithmetic): it splits each model's logits
exactly into the parts a bound must handle and measures how large each part is against how large any bound of a given
cost must take it. With s_n(j) the window pattern of `toy.modadd.windows` (unit n fires iff cos(x' + phi_n) > 0 at
the input's half-angle), z_n = P_n[a] + Q_n[b] the true pre-activation and zh_n its projection on the Fourier
frequencies {0} and +-h k (h = 1..H, k every key frequency: the *harmonic explanation*, a few numbers per unit),

    logit_c = D_A[a, c] + D_B[b, c] + sum_n s_n U'[c, n] zh_n    (the harmonic window logits)
            + sum_n s_n U'[c, n] (z_n - zh_n)                     (the residual)
            + sum_n U'[c, n] r_n,  r_n = ReLU(z_n) - s_n z_n >= 0 (the kinks: units firing against the window),

checked here against the model's logits on every input. Per part it prints the median over inputs of: its true effect
on the margin, and the bounds of it that cost O(p N) (per unit, worst case over the inputs), O(p N d) (the residual
summed over units in model space first: g = sum_n s_n W_out[:, n] (z_n - zh_n), sliding the window as in
`windows.window_tables`, then max_c ||W_U[c*] - W_U[c]|| ||g||), or O(p^2 N) (per (input, unit) pair), the hybrid
kink bound (the B units of `EXACT_UNITS` with the largest worst own-harmonic residual times output range summed per
pair, p^2 B, which for a fixed B grows like the circuit's 2 p^2 direct-logit entries; the other units relaxed per
unit), and the fraction of inputs each combination would certify if its parts were computed exactly (an upper limit of
what a sound bound built that way can certify). The LAST stdout line is one JSON object {model: {figure: value}}.
"""

from __future__ import annotations

import argparse
import copy as copy_module
import json
import math
from pathlib import Path

import torch

from hooked_bilinear.errors import HookedBilinearError
from hooked_bilinear.loading.pretrained import load_model
from hooked_bilinear.toy.modadd import ModAddTask, all_logits, margins
from hooked_bilinear.toy.modadd.interval import Ledger
from hooked_bilinear.toy.modadd.quadrature import certify_relu, read_tables, read_units
from hooked_bilinear.toy.modadd.windows import half_angle_index, predicted_firing

MODELS = (
    "out/modadd_relu_vs_bilinear/relu-p31",
    "modadd-relu-p59",
    "out/relu_seed1/relu-p113",
    "out/relu_seed2/relu-p113",
)
EXACT_UNITS = (32, 64, 128)  # B: units whose kinks the hybrid sums exactly (p^2 B, linear in the circuit for fixed B)


def margin_of(logits: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """min over c != answer of logits[answer] - logits[c], per row."""
    diff = logits.gather(1, answer[:, None]) - logits
    diff.scatter_(1, answer[:, None], math.inf)
    return diff.amin(1)


def limits(model: torch.nn.Module, harmonics: int) -> dict[str, float]:
    """The figures of the module docstring for one ReLU pizza model (asserting the split and every combination)."""
    task = ModAddTask.from_config(model.config)
    p = task.p
    tables = read_tables(model, task, Ledger())
    reading = read_units(tables, p, None, Ledger())
    P, Q, U = tables.P.mid, tables.Q.mid, tables.U.mid
    n_units = P.shape[1]
    block = model.transformer.blocks[0]
    W_out = getattr(block.mlp, model.config.mlp_down_name).weight.detach().double()  # [d, N]
    W_U = model.lm_head.weight.detach().double()  # [p, d]
    a, b = task.operands()
    answer = (a + b) % p
    model_logits = all_logits(model, task)
    true = margins(model_logits, task).reshape(-1).double()
    logits = model_logits.double().reshape(p * p, p)
    direct = tables.direct_a.mid[a] + tables.direct_b.mid[b]

    firing = predicted_firing(reading, p, Ledger())  # [2p, N]: the window pattern per half-angle
    slot = torch.tensor([reading.frequencies.index(int(k)) for k in reading.frequency])
    j = torch.stack([half_angle_index(k, a, b, p) for k in reading.frequencies], 1)  # [p^2, K]
    on = firing[j[:, slot], torch.arange(n_units)[None, :]].double()  # s_n at each input's half-angle
    sign = 2 * on - 1
    z = P[a] + Q[b]
    kink = z.clamp_min(0) - on * z  # r_n >= 0

    keep = torch.zeros(p, dtype=torch.bool)
    keep[0] = True
    for k in reading.frequencies:
        for h in range(1, harmonics + 1):
            keep[(h * k) % p] = keep[(-h * k) % p] = True
    spectrum = torch.fft.fft(torch.cat([P, Q], 1), dim=0)
    fitted = torch.fft.ifft(spectrum * keep[:, None], dim=0).real
    Ph, Qh = fitted[:, :n_units], fitted[:, n_units:]
    RP, RQ = P - Ph, Q - Qh
    zh = Ph[a] + Qh[b]

    harmonic = direct + (on * zh) @ U.T
    residual = (on * (z - zh)) @ U.T
    kinks = kink @ U.T
    identity = (harmonic + residual + kinks - logits).abs().amax().item()
    assert identity < 1e-3 * logits.abs().amax().item(), identity  # the split is exact (up to float32 logits)

    window = margin_of(harmonic, answer)
    residual_true = (margin_of(harmonic + residual, answer) - window).abs()
    spread = U.amax(0) - U.amin(0)  # range over c of U'[:, n]
    residual_per_unit = (spread[None, :] * (RP.abs()[a] + RQ.abs()[b])).sum(1)
    reach = torch.cdist(W_U, W_U).amax(1)  # max_c ||W_U[c*] - W_U[c]||
    residual_model_space = reach[answer] * ((on * (RP[a] + RQ[b])) @ W_out.T).norm(dim=1)

    weight = U.amax(0)[None, :] - U[answer]  # max_c U'[c, n] - U'[c*, n] >= 0
    kinks_exact = (weight * kink).sum(1)
    kinks_true = (margin_of(harmonic + residual + kinks, answer) - margin_of(harmonic + residual, answer)).abs()
    t = torch.arange(p).double()
    theta = 2 * math.pi * reading.frequency.double() / p
    key = reading.alpha[None, :] * torch.cos(theta[None, :] * t[:, None] + reading.phi[None, :])  # P~ = Q~
    key_z = key[a] + key[b]  # sign(key_z) is the window pattern
    worst_key = (P - key).abs().amax(0) + (Q - key).abs().amax(0)
    kinks_key_worst = (weight * (worst_key[None, :] - sign * key_z).clamp_min(0)).sum(1)
    # own key's harmonics of (P + Q) / 2 only: then zs_n = sum_h 2 |pi_nh| T_h(|C_k(d)|) cos(h x' + psi_nh) (T_h the
    # Chebyshev polynomials) depends on (|C_k(d)|, j) alone, so a bound with levels of |C_k(d)| is linear in p N
    own = torch.zeros(p, n_units, dtype=torch.bool)
    own[0] = True
    for h in range(1, harmonics + 1):
        own[(h * reading.frequency) % p, torch.arange(n_units)] = True
        own[(-h * reading.frequency) % p, torch.arange(n_units)] = True
    symmetric = torch.fft.ifft(torch.fft.fft((P + Q) / 2, dim=0) * own, dim=0).real
    worst_own = (P - symmetric).abs().amax(0) + (Q - symmetric).abs().amax(0)
    zs = symmetric[a] + symmetric[b]
    coefficients = torch.fft.fft((P + Q) / 2, dim=0) / p
    chebyshev = 2 * coefficients[0].real[None, :].expand_as(zs).clone()
    for k in reading.frequencies:  # the same from (|C_k(d)|, j) alone, by the Chebyshev form
        units = (reading.frequency == k).nonzero().flatten()
        level = torch.cos(math.pi * k * (a - b).double() / p).abs()  # |C_k(d)|
        half = math.pi * half_angle_index(k, a, b, p).double() / p  # x'
        for h in range(1, harmonics + 1):
            c = 2 * coefficients[(h * k) % p, units]  # S_n ~ Re(c e^{i h k 2 pi t / p})
            T_h = torch.cos(h * torch.arccos(level))
            chebyshev[:, units] += 2 * c.abs()[None, :] * T_h[:, None] * torch.cos(h * half[:, None] + c.angle())
    chebyshev_error = (chebyshev - zs).abs().amax().item()
    assert chebyshev_error < 1e-9 * (1 + zs.abs().amax().item()), chebyshev_error
    own_per_unit = weight * (worst_own[None, :] - sign * zs).clamp_min(0)  # >= weight * kink, per (input, unit)
    kinks_own_worst = own_per_unit.sum(1)
    # the hybrid: the B units with the largest worst own-harmonic residual times output range (a choice from O(p N)
    # numbers) have their kinks summed exactly on every input (p^2 B), the rest relaxed as above
    order = (worst_own * spread).argsort(descending=True)
    kinks_hybrid = {}
    for count in EXACT_UNITS:
        exact_units = torch.zeros(n_units, dtype=torch.bool)
        exact_units[order[:count]] = True
        kinks_hybrid[count] = torch.where(exact_units[None, :], weight * kink, own_per_unit).sum(1)
    worst_residual = RP.abs().amax(0) + RQ.abs().amax(0)
    kinks_harmonic_worst = (weight * (worst_residual[None, :] - sign * zh).clamp_min(0)).sum(1)

    # the harmonic explanation's own sign pattern, per input (no window): its logits D + sum_n U' ReLU(zh_n) cost a
    # pass per (input, unit, output), but its residual and kinks are small
    pattern = (zh > 0).double()
    explanation = margin_of(direct + (pattern * zh) @ U.T, answer)
    residual_pattern = reach[answer] * ((pattern * (z - zh)) @ W_out.T).norm(dim=1)
    kinks_pattern = (weight * (worst_residual[None, :] - zh.abs()).clamp_min(0)).sum(1)

    # each bound covers its part on every input, as its derivation says
    with_residual = margin_of(harmonic + residual, answer)
    assert (residual_true <= residual_model_space + 1e-9).all(), "model-space residual bound"
    assert (residual_true <= residual_per_unit + 1e-9).all(), "per-unit residual bound"
    drop = with_residual - margin_of(harmonic + residual + kinks, answer)  # how far the kinks lower the margin
    for bound_name, bound in (
        ("exact kinks", kinks_exact),
        ("harmonic worst kinks", kinks_harmonic_worst),
        ("own harmonic worst kinks", kinks_own_worst),
        ("key worst kinks", kinks_key_worst),
        *((f"hybrid kinks B = {count}", kinks) for count, kinks in kinks_hybrid.items()),
    ):
        assert (drop <= bound + 1e-9).all(), bound_name
    windows = certify_relu(model, task)
    combos = {
        "certified_windows_bound": windows.compressed_accuracy,
        "limit_model_space_residual_exact_kinks": window - residual_model_space - kinks_exact,
        "limit_per_unit_residual_exact_kinks": window - residual_per_unit - kinks_exact,
        "limit_model_space_residual_harmonic_worst_kinks": window - residual_model_space - kinks_harmonic_worst,
        "limit_model_space_residual_own_harmonic_worst_kinks": window - residual_model_space - kinks_own_worst,
        "limit_harmonic_pattern": explanation - residual_pattern - kinks_pattern,
        "limit_model_space_residual_key_worst_kinks": window - residual_model_space - kinks_key_worst,
        **{
            f"limit_model_space_residual_hybrid_kinks_B{count}": window - residual_model_space - kinks
            for count, kinks in kinks_hybrid.items()
        },
    }
    out: dict[str, float] = {
        "p": p,
        "accuracy": (true > 0).double().mean().item(),
        "true_margin_median": true.median().item(),
        "harmonic_frequencies": int(keep.sum().item()),
        "residual_energy": ((RP.pow(2).sum() + RQ.pow(2).sum()) / (P.pow(2).sum() + Q.pow(2).sum())).item(),
        "mispredicted_pairs_window": (kink > 0).double().mean().item(),
        "mispredicted_pairs_harmonic": ((zh > 0) != (z > 0)).double().mean().item(),
        "harmonic_window_margin_positive": (window > 0).double().mean().item(),
        "split_identity_max_error": identity,
        "chebyshev_form_max_error": chebyshev_error,
    }
    medians = {
        "harmonic_window_margin": window,
        "residual_true": residual_true,
        "residual_per_unit": residual_per_unit,
        "residual_model_space": residual_model_space,
        "kinks_true": kinks_true,
        "kinks_exact": kinks_exact,
        "kinks_harmonic_worst": kinks_harmonic_worst,
        "kinks_own_harmonic_worst": kinks_own_worst,
        "kinks_key_worst": kinks_key_worst,
        **{f"kinks_hybrid_B{count}": kinks for count, kinks in kinks_hybrid.items()},
        "harmonic_pattern_explanation": explanation,
        "harmonic_pattern_residual": residual_pattern,
        "harmonic_pattern_kinks": kinks_pattern,
    }
    out.update({f"{name}_median": values.median().item() for name, values in medians.items()})
    for key_name, value in combos.items():
        if isinstance(value, torch.Tensor):
            assert (value <= true + 1e-6).all(), key_name  # each combination is below the true margin
            value = (value > 0).double().mean().item()
        out[key_name] = value
    return out


def additive_fraction(model: torch.nn.Module) -> float:
    """The fraction of the hidden pre-activations' variance over all p^2 inputs (last position) that is additive,
    P_n[a] + Q_n[b] (the best such fit: row plus column means): 1 for uniform attention, which the quadrature reading
    needs; any set-up (the Nanda one included)."""
    task = ModAddTask.from_config(model.config)
    copy = copy_module.deepcopy(model).double().eval()
    captured: list[torch.Tensor] = []
    hook = copy.transformer.blocks[0].mlp.w.register_forward_hook(lambda _m, _i, out: captured.append(out[:, -1]))
    with torch.no_grad():
        copy(task.tokens())
    hook.remove()
    z = captured[0].reshape(task.p, task.p, -1)  # [a, b, N]
    centred = z - z.mean((0, 1), keepdim=True)
    additive = centred.mean(1, keepdim=True) + centred.mean(0, keepdim=True)
    return 1 - ((centred - additive).pow(2).sum() / centred.pow(2).sum()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--harmonics", type=int, default=2, help="H: harmonics h = 1..H of every key frequency")
    parser.add_argument(
        "--additivity", action="store_true", help="print only additive_fraction per model (any set-up, e.g. Nanda)"
    )
    args = parser.parse_args()
    missing = [name for name in args.models if "/" in name and not Path(name).is_dir()]
    if missing:
        parser.error(
            f"{', '.join(missing)}: no such folder. The defaults under out/ are saved by "
            "scripts/modadd_relu_vs_bilinear.py (p = 31; --p 113 --families relu --seed 1 --work out/relu_seed1, "
            "likewise seed 2); or pass --models with the models you have (modadd-relu-p59 is shipped)."
        )
    if args.harmonics < 1:
        parser.error(
            f"--harmonics {args.harmonics}: H counts the harmonics h = 1..H of each key frequency; pass 1 or more."
        )
    try:
        models = {name: load_model(name) for name in args.models}
    except HookedBilinearError as error:
        parser.error(f"--models: {error}")
    if not args.additivity:
        p, name = min((ModAddTask.from_config(model.config).p, name) for name, model in models.items())
        if args.harmonics > (p - 1) // 2:
            parser.error(
                f"--harmonics {args.harmonics}: {name} has p = {p}, whose frequencies end at (p - 1) / 2 = "
                f"{(p - 1) // 2} (h and p - h are one frequency); pass at most {(p - 1) // 2}."
            )
    torch.set_num_threads(1)
    if args.additivity:
        print(json.dumps({name: additive_fraction(model) for name, model in models.items()}))
        return
    results = {}
    for name, model in models.items():
        results[name] = limits(model, args.harmonics)
        print(name, " ".join(f"{k}={v:.4g}" for k, v in results[name].items()), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
