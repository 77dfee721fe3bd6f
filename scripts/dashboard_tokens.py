"""Write the held-out token set the dashboard uses for the shipped `ts-synthetic-2l` by default.

    python scripts/dashboard_tokens.py [--out src/hooked_bilinear/dashboard/ts-synthetic-2l-heldout.safetensors]

200 synthetic stories of seed 3 (the model saw seed 0, its SAEs seeds 1 and 2; tutorials/sae_features.py evaluates on
seed 3 too), packed as the model was fed ([BOS] story [EOS] ..., windows of n_ctx = 128): int16 [n_seq, 128].
tests/dashboard/test_shipped.py regenerates it and checks the file equals it.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from safetensors.torch import save_file
from train_embedded import make_corpus

import hooked_bilinear as hb
from hooked_bilinear.dashboard.shipped import HELDOUT_FILE, HELDOUT_SEED, HELDOUT_STORIES
from hooked_bilinear.sae.train import pack_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HELDOUT_FILE)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained("ts-synthetic-2l")
    tokens = pack_texts(model.tokenizer, make_corpus(HELDOUT_STORIES, HELDOUT_SEED), model.cfg.n_ctx)
    save_file({"tokens": tokens.short().contiguous()}, args.out)
    print(f"{tuple(tokens.shape)} tokens -> {args.out}")


if __name__ == "__main__":
    main()
