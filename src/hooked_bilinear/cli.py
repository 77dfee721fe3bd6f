"""The `hooked-bilinear` command line: make, convert and publish bilinear models.

hooked-bilinear bilinearize MODEL DATA OUT [--steps 1000 ...]     SwiGLU Llama -> bilinear Llama folder
torchrun --nproc_per_node N -m hooked_bilinear bilinearize ...     the same on N processes (DDP / FSDP)
hooked-bilinear to-llama SOURCE OUT                                tdooms checkpoint -> stock Llama folder
hooked-bilinear save SOURCE OUT [--tokenizer T]                    any checkpoint -> a Hub-ready folder
hooked-bilinear push FOLDER REPO_ID [--endpoint URL]               a saved folder -> the Hugging Face Hub
hooked-bilinear modadd certify [--model modadd-p113] [--json]     prove a modular-addition model's accuracy
hooked-bilinear modadd train --setup nanda|pizza OUT              train one (Nanda / pizza set-up)
hooked-bilinear vision train OUT [--preset digits] [--noise-std 0.2] train a bilinear image classifier
hooked-bilinear vision report [--model digits] [--out DIR]        its eigen-images, truncation, masks, ...
hooked-bilinear dashboard MODEL --layer L --out FILE               one HTML file: eigen-features of a layer
hooked-bilinear train-sae MODEL DATA OUT --hooks H1,H2             TopK SAEs on streamed activations
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

from hooked_bilinear.errors import HookedBilinearError, command_line_errors

Commands = argparse._SubParsersAction  # the root parser's sub-commands: each command adds its own parser


def _bilinearize(args: argparse.Namespace) -> None:
    from hooked_bilinear.loading.pretrained import resolve_folder
    from hooked_bilinear.loading.tokenizer import load_folder_tokenizer
    from hooked_bilinear.making.bilinearize import bilinearize
    from hooked_bilinear.making.corpus import Corpus
    from hooked_bilinear.making.distributed import session
    from hooked_bilinear.making.report import check_reporters
    from hooked_bilinear.making.train import TrainConfig
    from hooked_bilinear.publishing.provenance import provenance_of
    from hooked_bilinear.publishing.save import save_pretrained

    rank = int(os.environ.get("RANK", "0"))
    out = Path(args.out)
    if out.exists() and not args.overwrite:  # refuse before hours of training, not after
        raise HookedBilinearError(f"{out} already exists; pass --overwrite to replace it, or choose another folder.")
    check_reporters(args.report_to)
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s")
    logging.getLogger("hooked_bilinear").setLevel(logging.INFO if rank == 0 else logging.WARNING)
    if rank != 0:  # one set of progress bars: rank 0's
        import transformers

        transformers.utils.logging.disable_progress_bar()
    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    checkpoint_dir = args.checkpoint_dir or f"{out}.state"
    data = args.data
    if any(v is not None for v in (args.text_column, args.split, args.dataset_config, args.revision)):
        data = Corpus(
            args.data,
            text_column=args.text_column or "text",
            split=args.split or "train",
            name=args.dataset_config,
            revision=args.revision,
        )
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    tokenizer: PreTrainedTokenizerBase | None = None
    if args.tokenizer is not None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        except (OSError, ValueError) as error:
            raise HookedBilinearError(
                f"--tokenizer {args.tokenizer}: cannot load a tokenizer from it ({error})."
            ) from error
    try:
        model = bilinearize(
            args.model,
            data,
            tokenizer=tokenizer,
            recipe=args.recipe,
            anneal_fraction=args.anneal_fraction,
            schedule=args.schedule,
            device=args.device,
            checkpoint_dir=checkpoint_dir,
            data_cache=args.data_cache,
            strategy=args.strategy,
            report_to=tuple(args.report_to),
            **options,
        )
    except ValueError as error:
        if isinstance(error, HookedBilinearError):
            raise
        raise HookedBilinearError(str(error)) from error
    if model is None or session().rank != 0:
        return
    if tokenizer is None:
        source = Path(args.model)
        tokenizer = load_folder_tokenizer(source if source.is_dir() else resolve_folder(args.model))
    save_pretrained(model, out, tokenizer=tokenizer, overwrite=args.overwrite)
    print(f"bilinear model written to {out} (resumable state, metrics.csv and loss_curve.png in {checkpoint_dir})")
    provenance = provenance_of(model)
    if provenance is not None and provenance.max_abs_logit_diff is not None:
        for key, value in provenance.details.items():
            if "source SwiGLU model" in key:
                print(f"{key}: {value}")
        print(
            f"fold / export check, max |logit difference| of {provenance.compared}: {provenance.max_abs_logit_diff:.3g}"
        )


def _add_bilinearize(commands: Commands) -> None:
    """`bilinearize MODEL DATA OUT [options]`."""
    b = commands.add_parser(
        "bilinearize",
        help="fine-tune a SwiGLU Llama into a bilinear one",
        description="Fine-tune a SwiGLU Llama into a bilinear one. On several processes: torchrun --nproc_per_node N "
        "-m hooked_bilinear bilinearize ... (DDP, or --strategy fsdp).",
    )
    b.add_argument("model", help="folder, shipped name or Hub id of a LlamaForCausalLM with hidden_act silu")
    b.add_argument(
        "data",
        metavar="DATA",
        help="token ids (.pt LongTensor / .npy integer array); or text: a .txt / .jsonl / .json / .parquet / "
        ".arrow file or a folder of them, or a Hub dataset name (streamed; needs the network)",
    )
    b.add_argument("out", help="output folder (config.json, model.safetensors, tokenizer, README.md)")
    from hooked_bilinear.making.config import TrainConfig  # both torch-free: the defaults --help shows
    from hooked_bilinear.making.recipe import RECIPES

    defaults = TrainConfig()
    b.add_argument(
        "--recipe",
        choices=list(RECIPES),
        default="paper",
        help="; ".join(
            f"{r.name}: {r.schedule} schedule, beta 1 -> 0 over the first {100 * r.anneal_fraction:.0f}%% of the steps, "
            f"{'learnable' if r.learnable_scale else 'no'} gate scale, lr {r.lr:g}, weight decay {r.weight_decay:g}"
            f"{', bf16 on CUDA' if r.bf16 else ''}"
            for r in RECIPES.values()
        )
        + " (default: %(default)s)",
    )
    b.add_argument("--steps", type=int, help=f"optimiser steps (default: {defaults.steps})")
    b.add_argument(
        "--batch-size",
        dest="batch_size",
        type=int,
        help=f"GLOBAL batch, split across processes (default: {defaults.batch_size})",
    )
    b.add_argument(
        "--micro-batch-size",
        dest="micro_batch_size",
        type=int,
        help="rows per forward pass on each process (gradient accumulation; default: its whole share)",
    )
    b.add_argument(
        "--seq-len",
        dest="seq_len",
        type=int,
        help=f"tokens per sequence, at most the model's max_position_embeddings (default: {defaults.seq_len})",
    )
    b.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    b.add_argument("--weight-decay", dest="weight_decay", type=float, help="(default: the recipe's)")
    b.add_argument(
        "--warmup-steps",
        dest="warmup_steps",
        type=int,
        help=f"linear learning-rate warmup, at most --steps (default: {defaults.warmup_steps})",
    )
    b.add_argument(
        "--checkpoint-every",
        dest="checkpoint_every",
        type=int,
        help=f"steps between resumable checkpoints (default: {defaults.checkpoint_every})",
    )
    b.add_argument("--seed", type=int, help=f"data order and initialisation (default: {defaults.seed})")
    b.add_argument(
        "--gradient-checkpointing",
        dest="gradient_checkpointing",
        action="store_true",
        default=None,
        help="recompute activations in the backward pass (default: off)",
    )
    b.add_argument(
        "--anneal-fraction",
        dest="anneal_fraction",
        type=float,
        help="share of the steps over which beta goes 1 -> 0 (default: the recipe's)",
    )
    b.add_argument("--schedule", choices=["linear", "cosine", "exp"], help="alpha(t) (default: the recipe's)")
    b.add_argument("--device", help="cpu or cuda (default: cuda when available; under torchrun, GPU LOCAL_RANK)")
    b.add_argument(
        "--strategy",
        choices=["auto", "ddp", "fsdp"],
        default="auto",
        help="under torchrun: ddp (auto) or fsdp (FSDP2, sharded) (default: %(default)s)",
    )
    b.add_argument("--text-column", dest="text_column", help="column holding the text (default: text)")
    b.add_argument("--split", help="Hub dataset split (default: train)")
    b.add_argument(
        "--dataset-config",
        dest="dataset_config",
        help="Hub dataset config name, e.g. sample-10BT (default: the dataset's default config)",
    )
    b.add_argument("--revision", help="Hub dataset revision (default: the newest)")
    b.add_argument("--tokenizer", help="tokenizer folder or Hub id for a text corpus (default: the model folder's)")
    b.add_argument(
        "--data-cache", dest="data_cache", help="where tokenized corpora are cached (default OUT.state/data)"
    )
    b.add_argument(
        "--report-to",
        dest="report_to",
        nargs="+",
        choices=["tensorboard", "wandb"],
        default=[],
        help="also log to TensorBoard / Weights & Biases (metrics.csv is always written)",
    )
    b.add_argument("--checkpoint-dir", dest="checkpoint_dir", help="resumable state (default OUT.state)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    b.set_defaults(run=_bilinearize)


def _to_llama(args: argparse.Namespace) -> None:
    from hooked_bilinear.publishing.provenance import provenance_of
    from hooked_bilinear.publishing.save import save_pretrained
    from hooked_bilinear.publishing.to_llama import to_llama

    llama = to_llama(args.source)  # records the source's tokenizer, which save_pretrained writes
    save_pretrained(llama, args.out, tokenizer=args.tokenizer, overwrite=args.overwrite)
    provenance = provenance_of(llama)
    difference = f"{provenance.max_abs_logit_diff:.3g}" if provenance is not None else "not recorded"
    print(
        f"LlamaForCausalLM written to {args.out}; max |logit difference| of the converted model against the source "
        f"checkpoint (probe tokens, a check of the conversion): {difference}"
    )


def _add_to_llama(commands: Commands) -> None:
    """`to-llama SOURCE OUT`."""
    t = commands.add_parser("to-llama", help="convert a current-format tdooms checkpoint to a stock Llama folder")
    t.add_argument("source", help="folder, shipped name or Hub id")
    t.add_argument("out", help="output folder")
    t.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the source's own)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    t.set_defaults(run=_to_llama)


def _save(args: argparse.Namespace) -> None:
    from hooked_bilinear.publishing.save import save_pretrained

    folder = save_pretrained(
        args.source,
        args.out,
        tokenizer=args.tokenizer,
        overwrite=args.overwrite,
        as_llama=args.as_llama,
        token_ids_only=args.token_ids_only,
    )
    print(f"{args.source} written to {folder} (config.json, weights, tokenizer, README.md model card)")


def _yes_no(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{value!r}: expected True or False")
    return value.lower() == "true"


def _add_save(commands: Commands) -> None:
    """`save SOURCE OUT`."""
    s = commands.add_parser(
        "save",
        help="write a checkpoint as a Hub-ready folder (stock Llama form for tdooms checkpoints)",
        description="Write a checkpoint as a folder stock transformers loads: weights, config, its tokenizer and a "
        "model card. tdooms-format checkpoints are written as a LlamaForCausalLM (verified) when they "
        "have that form.",
    )
    s.add_argument("source", help="folder, shipped name or Hub id")
    s.add_argument("out", help="output folder")
    s.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the checkpoint's own)")
    s.add_argument(
        "--as-llama",
        dest="as_llama",
        type=_yes_no,
        default=None,
        metavar="True|False",
        help="True: the Llama form or an error; False: keep this package's class (default: the Llama "
        "form when the checkpoint has one)",
    )
    s.add_argument(
        "--token-ids-only",
        dest="token_ids_only",
        action="store_true",
        help="the model has no tokenizer: write none, without a warning",
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    s.set_defaults(run=_save)


def _push(args: argparse.Namespace) -> None:
    from hooked_bilinear.publishing.hub import push_folder_to_hub

    print(
        push_folder_to_hub(
            args.folder,
            args.repo_id,
            overwrite=args.overwrite,
            private=args.private,
            token=args.token,
            endpoint=args.endpoint,
        )
    )


def _add_push(commands: Commands) -> None:
    """`push FOLDER REPO_ID`."""
    p = commands.add_parser("push", help="upload a saved folder to the Hugging Face Hub")
    p.add_argument("folder", help="a folder written by save / to-llama / bilinearize (checked to load first)")
    p.add_argument("repo_id", help="owner/name")
    p.add_argument("--overwrite", action="store_true", help="commit over an existing repo")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the cached login)")
    p.add_argument("--endpoint", help="Hub endpoint (default HF_ENDPOINT or huggingface.co)")
    p.set_defaults(run=_push)


def _modadd_certify(args: argparse.Namespace) -> None:
    import json

    from hooked_bilinear.loading.pretrained import load_model
    from hooked_bilinear.modeling.modeling import BilinearForCausalLM
    from hooked_bilinear.toy.modadd.report import modadd_report

    model = load_model(args.model)
    if not isinstance(model, BilinearForCausalLM):
        raise HookedBilinearError(f"{args.model} is a Llama checkpoint; modadd models are tdooms-format checkpoints.")
    try:
        frequencies = [int(k) for k in args.frequencies.split(",")] if args.frequencies else None
        result = modadd_report(model, frequencies)
    except ValueError as error:
        raise HookedBilinearError(f"--frequencies {args.frequencies}: {error}") from error
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>26}: {value}")


def _modadd_train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from hooked_bilinear.toy.modadd.task import NANDA, PIZZA
    from hooked_bilinear.toy.modadd.train import SETUP_TRAINING, save_model, train_recipe

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise HookedBilinearError(f"{out} already exists; pass --overwrite to replace it, or choose another folder.")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise HookedBilinearError(
            f"--max-epochs {args.max_epochs}: pass a positive number of epochs, or leave it out for the set-up's."
        )
    task = {"nanda": NANDA, "pizza": PIZZA}[args.setup]
    first, *later = (replace(stage, seed=args.seed, mlp=args.mlp) for stage in SETUP_TRAINING[args.setup])
    recipe = (replace(first, max_epochs=args.max_epochs or first.max_epochs), *later)
    model, history = train_recipe(task, recipe)
    save_model(model, out, history, recipe, overwrite=args.overwrite)
    rule = (
        f"target {'reached' if history.reached_target else 'NOT reached'}"
        if recipe[-1].stop_at_target
        else "the last epoch is the model"
    )
    print(
        f"{history.epochs[-1]} epochs, test accuracy {history.test_accuracy[-1]:.4f}, test loss "
        f"{history.test_loss[-1]:.3g} ({rule}) -> {out}"
    )


def _add_modadd(commands: Commands) -> None:
    """`modadd certify | modadd train`."""
    m = commands.add_parser("modadd", help="the modular-addition case study").add_subparsers(
        dest="modadd_command", required=True
    )
    c = m.add_parser("certify", help="brute-force accuracy, the certificate, and the compressed explanation")
    c.add_argument(
        "--model",
        default="modadd-p113",
        help="shipped name (modadd-p113, modadd-p59) or a folder saved by modadd train",
    )
    c.add_argument("--frequencies", help="comma-separated frequencies to keep (default: the key ones, by weight)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(run=_modadd_certify)
    tr = m.add_parser("train", help="train a one-layer bilinear transformer on (a + b) mod p")
    tr.add_argument(
        "--setup",
        choices=["nanda", "pizza"],
        required=True,
        help="nanda: p=113, 'a b =', 30%% train; pizza: p=59, 'a b', uniform attention, 80%% train (no default)",
    )
    tr.add_argument("out", help="output folder")
    tr.add_argument(
        "--max-epochs",
        dest="max_epochs",
        type=int,
        default=None,
        help="epochs of the first stage (default: the set-up's, SETUP_TRAINING: 2000 for nanda, 1500 for pizza; each "
        "then runs 500 more at weight decay 10; the last epoch is the model)",
    )
    tr.add_argument("--seed", type=int, default=0, help="initialisation and data split")
    tr.add_argument(
        "--mlp", choices=["bilinear", "relu"], default="bilinear", help="relu: a plain ReLU MLP (modadd-relu-p59)"
    )
    tr.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    tr.set_defaults(run=_modadd_train)


_PRESET = " (default: the --preset's, else VisionConfig's)"
VISION_TRAIN_FLAGS = {
    "dataset": "--dataset",
    "d_model": "--d-model",
    "d_hidden": "--d-hidden",
    "bias": "--bias",
    "head_bias": "--head-bias",
    "test_size": "--test-size",
    "seed": "--seed",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "noise_std": "--noise-std",
}


def _vision_train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from hooked_bilinear.vision.config import VisionConfig
    from hooked_bilinear.vision.pretrained import SHIPPED_CONFIGS
    from hooked_bilinear.vision.train import save_trained, train_classifier

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise HookedBilinearError(f"{out} already exists; pass --overwrite to replace it, or choose another folder.")
    base = SHIPPED_CONFIGS[args.preset] if args.preset else VisionConfig()
    options = {name: getattr(args, name) for name in VISION_TRAIN_FLAGS if getattr(args, name) is not None}
    if args.test_size == "official":
        options["test_size"] = None
    elif args.test_size is not None:
        try:
            options["test_size"] = float(args.test_size)
        except ValueError as error:
            raise HookedBilinearError(
                f"--test-size {args.test_size}: give a fraction such as 0.2, or 'official' "
                "(the MNIST files' own split)."
            ) from error
    try:
        config = replace(base, **options)
    except ValueError as error:
        flag = VISION_TRAIN_FLAGS.get(str(error).split()[0], "--preset / options")
        raise HookedBilinearError(f"{flag}: {error}") from error
    model, history = train_classifier(config, root=args.data_root)
    save_trained(model, out, history)
    print(
        f"{config.dataset}: {len(history.train_loss)} epochs, train accuracy {history.train_accuracy[-1]:.4f}, "
        f"test accuracy {history.test_accuracy[-1]:.4f} -> {out}"
    )


def _vision_report(args: argparse.Namespace) -> None:
    import json

    from hooked_bilinear.vision.pretrained import from_pretrained
    from hooked_bilinear.vision.report import classifier_report

    def numbers(text: str | None, flag: str, kind: type) -> tuple:
        if not text:
            return ()
        try:
            return tuple(kind(part) for part in text.split(","))
        except ValueError as error:
            raise HookedBilinearError(f"{flag} {text}: give comma-separated numbers, e.g. 0,0.1,0.2.") from error

    model = from_pretrained(args.model)
    noreg = None if args.noreg in (None, "none") else from_pretrained(args.noreg)
    result = classifier_report(
        model,
        args.out,
        noreg=noreg,
        root=args.data_root,
        sweep_stds=numbers(args.sweep, "--sweep", float),
        sweep_epochs=args.sweep_epochs,
        seeds=numbers(args.seeds, "--seeds", int),
        widths=numbers(args.widths, "--widths", int),
        progress=True,
    )
    if args.json:
        print(json.dumps(result))
        return
    quarter = {m: r["ratio_at_quarter_norm"] for m, r in result["adversarial"].items()}
    print(
        f"test accuracy {result['test_accuracy']:.4f}; logit_c = e^T Q_c e to {result['identity_max_relative_error']:.1e}"
        f" relative; top-8 truncation {result['truncation'].get('8', float('nan')):.4f}; masks at 1/4 mean image "
        f"norm vs permuted: eigen {quarter['eigen']:.1f}x, pinv {quarter['pinv']:.1f}x; outlier energy "
        f"{result['overfitting']['model']['outlier_energy']:.4f}"
        + (f" (noreg {result['overfitting']['noreg']['outlier_energy']:.4f})" if noreg is not None else "")
        + f"; figures and report.json in {args.out}"
    )


def _add_vision(commands: Commands) -> None:
    """`vision train | vision report`."""
    v = commands.add_parser("vision", help="the bilinear image-classifier case study").add_subparsers(
        dest="vision_command", required=True
    )
    vt = v.add_parser(
        "train",
        help="train a bilinear image classifier (digits from scikit-learn; MNIST / Fashion-MNIST from local IDX files)",
    )
    vt.add_argument("out", help="output folder (config.json, model.safetensors, TRAINING.json)")
    vt.add_argument(
        "--preset",
        choices=["digits", "digits-noreg"],
        help="start from the settings of a shipped model (default: VisionConfig's defaults)",
    )
    vt.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"], help="the images" + _PRESET)
    vt.add_argument(
        "--data-root",
        dest="data_root",
        help="folder holding MNIST/raw/ or FashionMNIST/raw/ (torchvision's layout of the IDX files; default: "
        "none, needed for mnist / fashion-mnist only)",
    )
    vt.add_argument("--d-model", dest="d_model", type=int, help="embedding size" + _PRESET)
    vt.add_argument("--d-hidden", dest="d_hidden", type=int, help="bilinear layer width" + _PRESET)
    vt.add_argument("--bias", action="store_true", default=None, help="biases on the bilinear layer" + _PRESET)
    vt.add_argument(
        "--head-bias", dest="head_bias", action="store_true", default=None, help="a bias on the class head" + _PRESET
    )
    vt.add_argument(
        "--test-size", dest="test_size", help="held-out fraction, or 'official' (MNIST files' split)" + _PRESET
    )
    vt.add_argument("--seed", type=int, help="initialisation, split and noise" + _PRESET)
    vt.add_argument("--epochs", type=int, help="training epochs" + _PRESET)
    vt.add_argument("--batch-size", dest="batch_size", type=int, help="images per step" + _PRESET)
    vt.add_argument("--lr", type=float, help="learning rate" + _PRESET)
    vt.add_argument("--weight-decay", dest="weight_decay", type=float, help="AdamW weight decay" + _PRESET)
    vt.add_argument("--noise-std", dest="noise_std", type=float, help="input Gaussian noise std, 0: none" + _PRESET)
    vt.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    vt.set_defaults(run=_vision_train)
    vr = v.add_parser("report", help="eigen-images, truncation, adversarial masks, overfitting, explanations")
    vr.add_argument("--model", default="digits", help="shipped name (digits, digits-noreg) or a trained folder")
    vr.add_argument(
        "--noreg",
        default="digits-noreg",
        help="the same model trained without input noise, for the overfitting comparison ('none': skip)",
    )
    vr.add_argument("--out", default="out/vision", help="folder for the PNGs and report.json")
    vr.add_argument(
        "--data-root", dest="data_root", help="for MNIST / Fashion-MNIST models: see vision train (default: as there)"
    )
    vr.add_argument(
        "--sweep",
        help="comma-separated input-noise stds to retrain at (the noise-sweep figure; default: none, no sweep)",
    )
    vr.add_argument(
        "--sweep-epochs", dest="sweep_epochs", type=int, help="epochs per sweep model (default: the model's)"
    )
    vr.add_argument(
        "--seeds", help="comma-separated seeds to retrain at, for eigen-image similarity across seeds (default: none)"
    )
    vr.add_argument(
        "--widths",
        help="comma-separated bilinear widths (d_hidden) to retrain at, for eigen-image similarity across hidden sizes "
        "(default: none)",
    )
    vr.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    vr.set_defaults(run=_vision_report)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default ("(default: ...)"), unless the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help is not None and "default" in action.help:
            return action.help
        return super()._get_help_string(action)


def _parsers(root: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The root parser and every sub-command's parser, nested ones included."""
    found = [root]
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                found += _parsers(sub)
    return found


def _command_parser(root: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (nested) sub-command `args` were parsed for."""
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return _command_parser(action.choices[getattr(args, action.dest)], args)
    return root


def _dashboard(args: argparse.Namespace) -> None:
    import json
    import warnings

    import torch

    from hooked_bilinear.dashboard import write_classifier_dashboard, write_dashboard
    from hooked_bilinear.dashboard.html import check_output
    from hooked_bilinear.vision.pretrained import SHIPPED_CONFIGS

    check_output(args.out)  # before loading anything
    folder = Path(args.model)
    config = folder / "config.json"
    if args.model in SHIPPED_CONFIGS or (config.is_file() and "dataset" in json.loads(config.read_text())):
        from hooked_bilinear.vision.pretrained import from_pretrained as classifier

        written = write_classifier_dashboard(classifier(args.model), args.out, k=args.k, root=args.data_root)
    else:
        from hooked_bilinear.dashboard import shipped
        from hooked_bilinear.loading.pretrained import from_pretrained
        from hooked_bilinear.sae import load
        from hooked_bilinear.sae.train import pack_texts

        if args.layer is None:
            raise HookedBilinearError(f"--layer: which MLP layer of {args.model} to show (e.g. --layer 0).")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = from_pretrained(args.model)
        if not 0 <= args.layer < len(model.blocks):
            raise HookedBilinearError(
                f"--layer {args.layer}: {args.model} has layers 0..{len(model.blocks) - 1}; pass one of them."
            )
        name = str(args.model)
        if args.tokens is None:
            if name != shipped.SHIPPED_MODEL:
                raise HookedBilinearError(
                    "--tokens: give a token set (.pt / .npy / .safetensors ids [n_seq, pos], or a .txt file); only "
                    f"{shipped.SHIPPED_MODEL} has a default one."
                )
            tokens, described = shipped.heldout_tokens(), shipped.HELDOUT_DESCRIPTION
        else:
            path = Path(args.tokens)
            if not path.is_file():
                raise HookedBilinearError(f"--tokens {path}: no such file.")
            if path.suffix == ".txt":
                texts = [line for line in path.read_text().splitlines() if line.strip()]
                tokens = pack_texts(model.tokenizer, texts, model.cfg.n_ctx)
            elif path.suffix == ".npy":
                import numpy as np

                tokens = torch.from_numpy(np.load(path))
            elif path.suffix == ".safetensors":
                from safetensors.torch import load_file

                tokens = next(iter(load_file(path).values()))
            else:
                tokens = torch.load(path, weights_only=True)
            tokens, described = tokens.long(), path.name
        if args.sae is None:
            sae_in, sae_out = shipped.shipped_saes(name, args.layer)
        else:
            sae_in = sae_out = None
            for entry in args.sae:
                if entry == "none":
                    continue
                sae = load(entry)
                hook = sae.hook_name or ""
                if hook.endswith("mlp.hook_in"):
                    sae_in = sae
                elif hook.endswith("mlp.hook_out"):
                    sae_out = sae
                else:
                    raise HookedBilinearError(
                        f"--sae {entry}: it reads {hook or 'an unnamed hook'}; the dashboard takes SAEs on "
                        f"blocks.{args.layer}.mlp.hook_in and blocks.{args.layer}.mlp.hook_out."
                    )
        directions = args.directions
        if directions is None:
            directions = shipped.frequent_tokens(model, tokens, args.n_tokens)
        features = args.features
        if features is None and sae_out is not None and args.n_features > 0:
            features = shipped.live_features(model, args.layer, sae_out, tokens, args.n_features)
        written = write_dashboard(
            model,
            args.layer,
            tokens,
            args.out,
            directions=directions,
            features=features,
            sae_in=sae_in,
            sae_out=sae_out,
            contrast=not args.raw,
            k=args.k,
            n_contexts=args.contexts,
            token_set=described,
        )
    shows = "classes" if args.model in SHIPPED_CONFIGS or args.layer is None else "directions"
    print(
        f"dashboard of {written.n_directions} {shows} written to {written.path} "
        f"({written.size_bytes / 1e6:.1f} MB, {written.seconds:.1f} s)"
    )


def _add_dashboard(commands: Commands) -> None:
    """`dashboard MODEL --layer L --out FILE [...]`."""
    d = commands.add_parser(
        "dashboard",
        help="one self-contained HTML file: a layer's output directions, eigenvectors, contexts, SAE interactions",
        description="Write one self-contained HTML dashboard (opens offline). For a language model: the output "
        "directions of --layer's bilinear MLP with their spectra, eigenvectors, top contexts and read-outs, and SAE "
        "output features with their input-feature interactions. For an image classifier (digits, digits-noreg or "
        "a trained folder): eigen-images per class and adversarial masks. With only MODEL, --layer and --out on "
        "ts-synthetic-2l: its held-out stories, its shipped SAEs, its most frequent tokens and live features.",
    )
    d.add_argument("model", help="shipped name (ts-synthetic-2l, digits, ...), folder or Hub id")
    d.add_argument("--layer", type=int, help="the MLP layer (language models; no default: required for them)")
    d.add_argument("--out", required=True, help="the HTML file to write (its folder must exist; no default)")
    d.add_argument(
        "--directions", nargs="+", help="tokens whose output directions to show (default: the most frequent)"
    )
    d.add_argument("--raw", action="store_true", help="raw unembedding directions instead of token contrasts")
    d.add_argument(
        "--features",
        nargs="+",
        type=int,
        help="output SAE feature ids to show (default: live ones of largest |lambda|)",
    )
    d.add_argument(
        "--sae",
        nargs="+",
        help="SAEs (shipped names, folders or Hub ids) on blocks.L.mlp.hook_in and/or hook_out; 'none' for none "
        "(default: the shipped ones of the model and layer)",
    )
    d.add_argument(
        "--tokens",
        help="token set: ids [n_seq, pos] in .pt / .npy / .safetensors, or a .txt (a text a line) (default: the shipped held-out stories for ts-synthetic-2l; required for other models)",
    )
    d.add_argument("--n-tokens", dest="n_tokens", type=int, default=32, help="default directions: this many tokens")
    d.add_argument("--n-features", dest="n_features", type=int, default=16, help="default features: this many")
    d.add_argument("--k", type=int, default=8, help="eigenvectors shown per direction")
    d.add_argument("--contexts", type=int, default=10, help="top and bottom contexts per eigenvector")
    d.add_argument(
        "--data-root",
        dest="data_root",
        help="for MNIST / Fashion-MNIST classifiers: see vision train (default: torchvision's cache)",
    )
    d.set_defaults(run=_dashboard)


def _train_sae(args: argparse.Namespace) -> None:
    import hooked_bilinear as hb
    from hooked_bilinear.activations.cache import ActivationCache, write_cache
    from hooked_bilinear.activations.store import ActivationStore
    from hooked_bilinear.making.corpus import Corpus, is_corpus_path
    from hooked_bilinear.sae.format import save
    from hooked_bilinear.sae.train import SAETrainConfig, train_saes

    out = Path(args.out)
    hooks = [h for h in args.hooks.split(",") if h]
    if any((out / hook).exists() for hook in hooks) and not args.overwrite:  # refuse before training, not after
        raise HookedBilinearError(
            f"{out} already holds SAEs of these hooks; pass --overwrite, or choose another folder."
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = hb.from_pretrained(args.model, device=args.device)
    missing = [hook for hook in hooks if hook not in model.hook_dict]
    if missing:
        raise HookedBilinearError(
            f"--hooks: {args.model} has no hook {missing[0]!r} (its MLP hooks are blocks.L.mlp.hook_in and "
            f"blocks.L.mlp.hook_out, L in 0..{len(model.blocks) - 1})."
        )
    data = Corpus(args.data, text_column=args.text_column) if is_corpus_path(args.data) else args.data
    store = ActivationStore(
        model,
        data,
        hooks,
        seq_len=args.seq_len,
        model_batch_size=args.model_batch_size,
        buffer_size=args.buffer_size,
        seed=args.seed,
        exclude_bos=args.exclude_bos,
        exclude_eos=args.exclude_eos,
        device=args.device,
        progress=True,
        corpus_cache=args.data_cache or f"{out}.tokens",
        max_sequences=args.max_sequences,
    )
    source: ActivationStore | ActivationCache = store
    if args.cache is not None:
        write_cache(store, args.cache, shard_sequences=args.model_batch_size * args.shard_batches)
        source = ActivationCache(args.cache, model=model, buffer_size=args.buffer_size, seed=args.seed)
    options = {f.name: getattr(args, f.name) for f in fields(SAETrainConfig) if getattr(args, f.name, None) is not None}
    results = train_saes(
        source,
        SAETrainConfig(**options),
        device=args.device,
        checkpoint_dir=args.checkpoint_dir or f"{out}.state",
        checkpoint_every=args.checkpoint_every,
    )
    for hook, result in results.items():
        save(result.sae, out / hook, overwrite=args.overwrite)
        print(f"{hook}: last batch FVU {result.losses[-1]:.4f}; SAE written to {out / hook}")


def _add_train_sae(commands: Commands) -> None:
    """`train-sae MODEL DATA OUT --hooks H1,H2 [options]`."""
    t = commands.add_parser(
        "train-sae",
        help="train TopK SAEs (one per hook) on activations streamed from a token file or text corpus",
    )
    t.add_argument("model", help="shipped name, folder or Hub id")
    t.add_argument("data", help="token file (.npy memory-mapped, .pt) or text corpus (.txt/.jsonl/.parquet or folder)")
    t.add_argument("out", help="folder: one SAELens-format SAE per hook in OUT/HOOK")
    t.add_argument("--hooks", required=True, help="comma-separated hook names, all from one forward pass (no default)")
    t.add_argument(
        "--text-column", dest="text_column", default="text", help="the text field of a .jsonl/.parquet corpus"
    )
    t.add_argument("--data-cache", dest="data_cache", help="folder for the tokenized corpus (default OUT.tokens)")
    t.add_argument("--seq-len", dest="seq_len", type=int, help="tokens per sequence (default: the model's context)")
    t.add_argument(
        "--max-sequences", dest="max_sequences", type=int, help="read at most this many sequences (default: all)"
    )
    t.add_argument("--model-batch-size", dest="model_batch_size", type=int, default=32, help="sequences per forward")
    t.add_argument("--buffer-size", dest="buffer_size", type=int, default=65536, help="shuffle buffer (activations)")
    t.add_argument(
        "--exclude-bos", dest="exclude_bos", action="store_true", help="leave out BOS positions (default: off)"
    )
    t.add_argument(
        "--exclude-eos", dest="exclude_eos", action="store_true", help="leave out EOS positions (default: off)"
    )
    t.add_argument(
        "--cache",
        help="write the activations here first (sharded safetensors, resumable), train from it (default: no cache, train from the stream)",
    )
    t.add_argument("--shard-batches", dest="shard_batches", type=int, default=8, help="forward batches per shard")
    t.add_argument("--checkpoint-dir", dest="checkpoint_dir", help="resumable training state (default OUT.state)")
    t.add_argument(
        "--checkpoint-every", dest="checkpoint_every", type=int, default=200, help="SAE steps between checkpoints"
    )
    t.add_argument("--device", default=None, help="where the model and SAEs run (default: the model's)")
    t.add_argument("--steps", type=int, help="optimiser steps per SAE (default: SAETrainConfig's, 2000)")
    t.add_argument("--batch-size", dest="batch_size", type=int, help="activations per step (default: 1024)")
    t.add_argument("--k", type=int, help="active latents per activation (default: 30)")
    t.add_argument("--expansion", type=int, help="latents per input dimension (default: 4)")
    t.add_argument("--lr", type=float, help="Adam learning rate (default: 1e-3)")
    t.add_argument("--seed", type=int, default=0, help="SAE initialisation and the shuffle buffer")
    t.add_argument("--overwrite", action="store_true", help="replace SAEs already in OUT (default: refuse)")
    t.set_defaults(run=_train_sae)


def parser() -> argparse.ArgumentParser:
    """The command line: every sub-command's parser shows the defaults in its help (`_HelpFormatter`)."""
    root = argparse.ArgumentParser(prog="hooked-bilinear", description="Make, convert and publish bilinear models.")
    commands = root.add_subparsers(dest="command", required=True)
    for add in (
        _add_bilinearize,
        _add_to_llama,
        _add_save,
        _add_push,
        _add_modadd,
        _add_vision,
        _add_dashboard,
        _add_train_sae,
    ):
        add(commands)
    for each in _parsers(root):
        each.formatter_class = _HelpFormatter
    return root


def main(argv: list[str] | None = None) -> int:
    """Run a command; a HookedBilinearError prints its message and returns 1 (no traceback).

    Fast by construction: this module imports nothing heavy at the top, and `hooked_bilinear` itself skips its API
    while the command starts (see `hooked_bilinear._starting_command_line`), so `--help` and usage errors answer
    without importing torch. Each handler imports what it needs inside itself; the API is loaded here, after parsing.
    """
    root = parser()
    args, unknown = root.parse_known_args(argv)
    if unknown:  # reported by the sub-command's parser, with its usage, not the root's
        _command_parser(root, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    _load_package()
    try:
        with command_line_errors():
            args.run(args)
    except HookedBilinearError as error:
        print(f"hooked-bilinear {args.command}: error: {error}", file=sys.stderr)
        return _leave(1)
    return _leave(0)


def _load_package() -> None:
    """Import hooked_bilinear's API (and register its Auto classes and adapters) exactly as `import hooked_bilinear`
    does, if the command's start skipped it."""
    package = sys.modules["hooked_bilinear"]
    if "from_pretrained" not in vars(package):
        vars(package)["_arguments_parsed"] = True
        importlib.reload(package)


def _leave(code: int) -> int:
    """Under torchrun, end the process here rather than in the interpreter's shutdown. FSDP2's module state keeps
    the process group alive after destroy_process_group, and a gloo thread that takes the GIL during finalization
    aborts the process with SIGABRT ("terminate called without an active exception", pytorch#179291): a finished run
    would fail. Everything is written and closed by now; only the buffers are left to flush."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return code
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
