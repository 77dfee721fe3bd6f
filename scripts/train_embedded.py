"""Make the embedded checkpoint `ts-synthetic-2l`: corpus, tokenizer, training, and the tdooms-format files.

    python scripts/train_embedded.py [--steps 1500] [--out src/hooked_bilinear/checkpoints/ts-synthetic-2l]

1. Corpus: short TinyStories-like stories generated from templates with a fixed seed (no download). It is a
   synthetic corpus: a few hundred words, simple grammar. The model learns its statistics, not English.
2. Tokenizer: WordPiece as docs/formats.md section 3 describes the TinyStories tokenizers (NFD + StripAccents +
   Lowercase; Punctuation(isolated) + Whitespace + Digits(individual); "[BOS] $A"; [UNK]=0, [BOS]=1, [EOS]=2;
   "##" continuation prefix; no decoder).
3. Model: a bilinear transformer in the current tdooms format (2 layers, d_model 128, 4 heads, d_hidden 256,
   n_ctx 128, gate null, no biases, weightless RMSNorm), trained with AdamW on next-token prediction.
4. Files: config.json (the tdooms keys, plus model_type, vocab_size and architectures so that transformers'
   Auto classes and TransformerBridge.boot_transformers load the folder), model.safetensors, tokenizer files, TRAINING.md.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import PreTrainedTokenizerFast

from hooked_bilinear.modeling.configuration import MODEL_TYPE, config_from_dict
from hooked_bilinear.modeling.modeling import BilinearForCausalLM

NAMES = ["lily", "tom", "mia", "ben", "sara", "max", "anna", "sam", "lucy", "jack", "emma", "leo"]
ANIMALS = ["cat", "dog", "bird", "bunny", "fish", "frog", "duck", "bear", "mouse", "puppy"]
THINGS = ["ball", "kite", "box", "hat", "cake", "book", "toy", "boat", "flower", "apple", "car", "drum"]
PLACES = ["park", "garden", "forest", "beach", "house", "school", "farm", "lake", "hill", "shop"]
COLORS = ["red", "blue", "green", "yellow", "big", "small", "shiny", "soft", "happy", "little"]
FEELINGS = ["happy", "sad", "excited", "scared", "tired", "proud", "surprised", "angry"]
VERBS = ["played", "ran", "jumped", "danced", "walked", "sang", "laughed", "looked around"]

TEMPLATES = [
    "once upon a time , there was a {color} {animal} named {name} .",
    "{name} went to the {place} with {pronoun} {animal} .",
    "one day , {name} found a {color} {thing} in the {place} .",
    "{name} was very {feeling} because the {thing} was {color} .",
    "the {animal} {verb} in the {place} all day .",
    '{name} said , " can i play with your {thing} ? "',
    '" yes , you can ! " said {name2} .',
    "they {verb} together and had a lot of fun .",
    "{name} gave the {thing} to {name2} and {name2} was {feeling} .",
    "at the end of the day , {name} went home and slept .",
    "the {color} {animal} wanted to find the {thing} .",
    "{name} and {name2} looked for the {thing} in the {place} .",
    "{name} counted {n} {thing}s in the {place} .",
    "the sun was warm and the {animal} was {feeling} .",
]


def make_corpus(n_stories: int, seed: int = 0) -> list[str]:
    """Deterministic template stories: each a name, a few events, and an ending."""
    rng = random.Random(seed)
    stories = []
    for _ in range(n_stories):
        name, name2 = rng.sample(NAMES, 2)
        fill = dict(
            name=name,
            name2=name2,
            animal=rng.choice(ANIMALS),
            thing=rng.choice(THINGS),
            place=rng.choice(PLACES),
            color=rng.choice(COLORS),
            feeling=rng.choice(FEELINGS),
            verb=rng.choice(VERBS),
            pronoun=rng.choice(["his", "her"]),
            n=rng.randint(2, 9),
        )
        body = [TEMPLATES[0]] + rng.sample(TEMPLATES[1:-1], 4) + [TEMPLATES[9]]
        stories.append(" ".join(t.format(**fill) for t in body))
    return stories


def build_tokenizer(corpus: list[str], vocab_size: int) -> Tokenizer:
    """WordPiece tokenizer exactly as docs/formats.md section 3 describes the TinyStories ones."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Punctuation("isolated"),
            pre_tokenizers.Whitespace(),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[UNK]", "[BOS]", "[EOS]"], continuing_subword_prefix="##"
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 1)])
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("src/hooked_bilinear/checkpoints/ts-synthetic-2l"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--stories", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)

    corpus = make_corpus(args.stories, args.seed)
    tok = build_tokenizer(corpus, vocab_size=512)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]", pad_token="[EOS]"
    )
    ids = []
    for story in corpus:
        ids.extend(fast(story)["input_ids"] + [fast.eos_token_id])
    data = torch.tensor(ids)
    n_val = len(data) // 20
    train, val = data[:-n_val], data[-n_val:]

    raw_config = dict(
        n_layer=2,
        n_head=4,
        d_model=128,
        d_hidden=256,
        n_ctx=128,
        bilinear=True,
        gate=None,
        bias=False,
        normalization=True,
        tokenizer=None,
        repo="ts-synthetic-2l",
        model_type="",
        architectures=["Transformer"],
    )
    model = BilinearForCausalLM(config_from_dict(raw_config, vocab_size=len(fast)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(args.seed)
    batch, ctx = 32, raw_config["n_ctx"]

    def sample(split: torch.Tensor) -> torch.Tensor:
        starts = torch.randint(0, len(split) - ctx, (batch,), generator=gen)
        return torch.stack([split[s : s + ctx] for s in starts])

    bar = tqdm(range(args.steps), desc="train ts-synthetic-2l")
    for _ in bar:
        tokens = sample(train)
        loss = model(tokens, labels=tokens).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        val_loss = sum(model(t := sample(val), labels=t).loss.item() for _ in range(20)) / 20

    args.out.mkdir(parents=True, exist_ok=True)
    # The tdooms keys plus what transformers' Auto classes and TransformerBridge.boot_transformers need.
    saved_config = dict(
        raw_config,
        model_type=MODEL_TYPE,
        checkpoint_format="current",
        vocab_size=len(fast),
        architectures=["BilinearForCausalLM"],
    )
    (args.out / "config.json").write_text(json.dumps(saved_config, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out / "model.safetensors"))
    fast.save_pretrained(str(args.out))
    (args.out / "TRAINING.md").write_text(
        "# ts-synthetic-2l\n\n"
        "A small bilinear transformer (current tdooms format: 2 layers, d_model 128, 4 heads, d_hidden 256, n_ctx 128, "
        f"vocab {len(fast)}) trained by `scripts/train_embedded.py` for {args.steps} steps of 32 x 128 tokens on a "
        f"SYNTHETIC corpus of {args.stories} template-generated TinyStories-like stories (seed {args.seed}; no real "
        "TinyStories data). It is a test and tutorial model: it knows the templates' statistics, not English.\n\n"
        f"Validation loss: {val_loss:.3f} nats/token.\n"
    )
    print(f"validation loss {val_loss:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
