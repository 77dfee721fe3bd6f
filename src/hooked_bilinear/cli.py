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
hooked-bilinear train-sae MODEL DATA OUT --hooks H1,H2             TopK SAEs on streamed activations
"""

from __future__ import annotations

import argparse
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
    b.add_argument(
        "--recipe",
        choices=["paper", "authors-code", "cosine80"],
        default="paper",
        help="paper (default): linear beta 1 -> 0 over the first 30%%, learnable gate scale, lr 1e-4, "
        "weight decay 0.1, bf16 on CUDA; authors-code: the schedule of the authors' finetuning.py "
        "(exp decay over the whole run); cosine80: the package's first default (cosine over 80%%, "
        "lr 3e-4)",
    )
    b.add_argument("--steps", type=int)
    b.add_argument("--batch-size", dest="batch_size", type=int, help="GLOBAL batch (split across processes)")
    b.add_argument(
        "--micro-batch-size",
        dest="micro_batch_size",
        type=int,
        help="rows per forward pass on each process (gradient accumulation; default: its whole share)",
    )
    b.add_argument("--seq-len", dest="seq_len", type=int)
    b.add_argument("--lr", type=float, help="overrides the recipe's")
    b.add_argument("--weight-decay", dest="weight_decay", type=float, help="overrides the recipe's")
    b.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    b.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    b.add_argument("--seed", type=int)
    b.add_argument("--gradient-checkpointing", dest="gradient_checkpointing", action="store_true", default=None)
    b.add_argument("--anneal-fraction", dest="anneal_fraction", type=float, help="overrides the recipe's")
    b.add_argument("--schedule", choices=["linear", "cosine", "exp"], help="overrides the recipe's")
    b.add_argument("--device", help="cpu or cuda (default: cuda when available; under torchrun, GPU LOCAL_RANK)")
    b.add_argument(
        "--strategy",
        choices=["auto", "ddp", "fsdp"],
        default="auto",
        help="under torchrun: ddp (auto) or fsdp (FSDP2, sharded)",
    )
    b.add_argument("--text-column", dest="text_column", help="column holding the text (default: text)")
    b.add_argument("--split", help="Hub dataset split (default: train)")
    b.add_argument("--dataset-config", dest="dataset_config", help="Hub dataset config name (e.g. sample-10BT)")
    b.add_argument("--revision", help="Hub dataset revision")
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
    print(f"LlamaForCausalLM written to {args.out}; max |logit difference| vs the source {difference}")


def _add_to_llama(commands: Commands) -> None:
    """`to-llama SOURCE OUT`."""
    t = commands.add_parser("to-llama", help="convert a current-format tdooms checkpoint to a stock Llama folder")
    t.add_argument("source", help="folder, shipped name or Hub id")
    t.add_argument("out")
    t.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the source's own)")
    t.add_argument("--overwrite", action="store_true")
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
    p.add_argument("--private", action="store_true")
    p.add_argument("--token")
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
    first, *later = (replace(stage, seed=args.seed) for stage in SETUP_TRAINING[args.setup])
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
    c.add_argument("--frequencies", help="comma-separated frequencies to keep (default: key ones by weight)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(run=_modadd_certify)
    tr = m.add_parser("train", help="train a one-layer bilinear transformer on (a + b) mod p")
    tr.add_argument(
        "--setup",
        choices=["nanda", "pizza"],
        required=True,
        help="nanda: p=113, 'a b =', 30%% train; pizza: p=59, 'a b', uniform attention, 80%% train",
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
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--overwrite", action="store_true")
    tr.set_defaults(run=_modadd_train)


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
    vt.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"])
    vt.add_argument(
        "--data-root",
        dest="data_root",
        help="folder holding MNIST/raw/ or FashionMNIST/raw/ (torchvision's layout of the IDX files)",
    )
    vt.add_argument("--d-model", dest="d_model", type=int, help="embedding size")
    vt.add_argument("--d-hidden", dest="d_hidden", type=int, help="bilinear layer width")
    vt.add_argument("--bias", action="store_true", default=None, help="biases on the bilinear layer")
    vt.add_argument("--head-bias", dest="head_bias", action="store_true", default=None)
    vt.add_argument("--test-size", dest="test_size", help="held-out fraction, or 'official' (MNIST files' split)")
    vt.add_argument("--seed", type=int)
    vt.add_argument("--epochs", type=int)
    vt.add_argument("--batch-size", dest="batch_size", type=int)
    vt.add_argument("--lr", type=float)
    vt.add_argument("--weight-decay", dest="weight_decay", type=float)
    vt.add_argument("--noise-std", dest="noise_std", type=float, help="input Gaussian noise std (0: none)")
    vt.add_argument("--overwrite", action="store_true")
    vt.set_defaults(run=_vision_train)
    vr = v.add_parser("report", help="eigen-images, truncation, adversarial masks, overfitting, explanations")
    vr.add_argument("--model", default="digits", help="shipped name (digits, digits-noreg) or a trained folder")
    vr.add_argument(
        "--noreg",
        default="digits-noreg",
        help="the same model trained without input noise, for the overfitting comparison ('none': skip)",
    )
    vr.add_argument("--out", default="out/vision", help="folder for the PNGs and report.json")
    vr.add_argument("--data-root", dest="data_root", help="for MNIST / Fashion-MNIST models: see vision train")
    vr.add_argument("--sweep", help="comma-separated input-noise stds to retrain at (the noise-sweep figure)")
    vr.add_argument(
        "--sweep-epochs", dest="sweep_epochs", type=int, help="epochs per sweep model (default: the model's)"
    )
    vr.add_argument("--seeds", help="comma-separated seeds to retrain at, for eigen-image similarity across seeds")
    vr.add_argument(
        "--widths",
        help="comma-separated bilinear widths (d_hidden) to retrain at, for eigen-image similarity across hidden sizes",
    )
    vr.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    vr.set_defaults(run=_vision_report)


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
    t.add_argument("--hooks", required=True, help="comma-separated hook names, all from one forward pass")
    t.add_argument("--text-column", dest="text_column", default="text")
    t.add_argument("--data-cache", dest="data_cache", help="folder for the tokenized corpus (default OUT.tokens)")
    t.add_argument("--seq-len", dest="seq_len", type=int, help="tokens per sequence (default: the model's context)")
    t.add_argument("--max-sequences", dest="max_sequences", type=int, help="read at most this many sequences")
    t.add_argument("--model-batch-size", dest="model_batch_size", type=int, default=32, help="sequences per forward")
    t.add_argument("--buffer-size", dest="buffer_size", type=int, default=65536, help="shuffle buffer (activations)")
    t.add_argument("--exclude-bos", dest="exclude_bos", action="store_true")
    t.add_argument("--exclude-eos", dest="exclude_eos", action="store_true")
    t.add_argument("--cache", help="write the activations here first (sharded safetensors, resumable), train from it")
    t.add_argument("--shard-batches", dest="shard_batches", type=int, default=8, help="forward batches per shard")
    t.add_argument("--checkpoint-dir", dest="checkpoint_dir", help="resumable training state (default OUT.state)")
    t.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=200)
    t.add_argument("--device", default=None)
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--k", type=int)
    t.add_argument("--expansion", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(run=_train_sae)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="hooked-bilinear", description="Make, convert and publish bilinear models.")
    commands = root.add_subparsers(dest="command", required=True)
    for add in (_add_bilinearize, _add_to_llama, _add_save, _add_push, _add_modadd, _add_vision, _add_train_sae):
        add(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run a command; a HookedBilinearError prints its message and returns 1 (no traceback)."""
    args = parser().parse_args(argv)
    try:
        with command_line_errors():
            args.run(args)
    except HookedBilinearError as error:
        print(f"hooked-bilinear {args.command}: error: {error}", file=sys.stderr)
        return _leave(1)
    return _leave(0)


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
