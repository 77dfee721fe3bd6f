# %% [markdown]
# # Quickstart: the embedded bilinear model as a TransformerLens hooked transformer
#
# Run as a script with `python tutorials/quickstart.py [--out out/quickstart]`, or open it as a notebook (jupytext).
#
# 1. Load the shipped checkpoint `ts-synthetic-2l` (a 2-layer bilinear transformer in the tdooms format, trained on a
#    synthetic TinyStories-like corpus) with `hooked_bilinear.from_pretrained`.
# 2. Generate a few tokens.
# 3. Cache every activation and list one layer's hook names and shapes; check the bilinear identity
#    hook_post == hook_pre * hook_pre_linear.
# 4. Activation patching with `transformer_lens.patching`: which residual-stream positions carry the story's animal?
#    Saves a heatmap PNG.
# 5. The modular-addition model modadd-p59: its accuracy on all 59^2 inputs (100%), proven from its weights.

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script draws off-screen; a notebook shows its figures inline
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformer_lens import patching  # noqa: E402

import hooked_bilinear as hb  # noqa: E402
from hooked_bilinear.loading.pretrained import load_model  # noqa: E402
from hooked_bilinear.toy.modadd import (  # noqa: E402
    ModAddTask,
    all_logits,
    brute_force_flops,
    certify_exact,
    margins,
)

parser = argparse.ArgumentParser(description="Quickstart: the embedded bilinear model as a hooked transformer.")
parser.add_argument("--out", type=Path, default=Path("out/quickstart"))
args, _ = parser.parse_known_args()  # in a notebook the kernel's own arguments are left alone
args.out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Load
#
# A short name without a slash is a checkpoint shipped inside the package.

# %%
print(f"shipped checkpoints: {hb.shipped_checkpoints()}")
model = hb.from_pretrained("ts-synthetic-2l")
print(
    f"loaded {model.cfg.model_name}: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}, "
    f"d_mlp {model.cfg.d_mlp}, vocab {model.cfg.d_vocab}; MLP 0 is {type(model.blocks[0].mlp).__name__}"
)

# %% [markdown]
# ## 2. Generate
#
# Greedy. The TinyStories WordPiece tokenizer has no decoder: sub-words print as "##piece".

# %%
prompt = "once upon a time , there was a"
print(f"\ngenerate: {model.generate(prompt, max_new_tokens=12, do_sample=False, verbose=False)!r}")

# %% [markdown]
# ## 3. Cache

# %%
logits, cache = model.run_with_cache(prompt)
print(f"\nrun_with_cache: logits {tuple(logits.shape)}, {len(cache)} activations; layer 0:")
for name in cache.keys():
    if name.startswith("blocks.0."):
        print(f"  {name:36s} {tuple(cache[name].shape)}")
product = cache["blocks.0.mlp.hook_pre"] * cache["blocks.0.mlp.hook_pre_linear"]
print(f"hook_post == hook_pre * hook_pre_linear: {torch.equal(cache['blocks.0.mlp.hook_post'], product)}")

# %% [markdown]
# ## 4. Activation patching
#
# The clean and corrupted stories differ in one word (the animal); the metric is how much the model prefers the
# clean animal over the corrupted one when it has to name the animal again.

# %%
clean = model.to_tokens("once upon a time , there was a red cat named lily . lily went to the park with her")
corrupted = model.to_tokens("once upon a time , there was a red dog named lily . lily went to the park with her")
cat, dog = model.to_single_token("cat"), model.to_single_token("dog")


def metric(logits: torch.Tensor) -> torch.Tensor:
    return logits[0, -1, cat] - logits[0, -1, dog]


clean_logits, clean_cache = model.run_with_cache(clean)
print(
    f"\nlogit(cat) - logit(dog): clean {metric(clean_logits).item():+.3f}, "
    f"corrupted {metric(model(corrupted)).item():+.3f}"
)
result = patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)
labels = [f"{i}:{t}" for i, t in enumerate(model.to_str_tokens(clean))]
best_layer, best_pos = divmod(int(result.argmax()), result.shape[1])
print(
    f"patching resid_pre: largest recovery {result.max().item():+.3f} at layer {best_layer}, "
    f"position {labels[best_pos]}"
)
print("per layer at the animal's position and at the last position:")
animal_pos = (clean != corrupted).nonzero()[0, 1].item()
for layer in range(model.cfg.n_layers):
    print(
        f"  layer {layer}: pos {animal_pos} {result[layer, animal_pos].item():+.3f}   "
        f"last {result[layer, -1].item():+.3f}"
    )

# %%
fig, ax = plt.subplots(figsize=(10, 2.5))
image = ax.imshow(result.detach().numpy(), cmap="RdBu", vmin=-abs(result).max(), vmax=abs(result).max(), aspect="auto")
ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
ax.set_yticks(range(model.cfg.n_layers))
ax.set_ylabel("layer (resid_pre)")
ax.set_title("logit(cat) - logit(dog) after patching the clean residual stream into the corrupted run")
fig.colorbar(image, ax=ax)
fig.tight_layout()
fig.savefig(args.out / "patching_resid_pre.png", dpi=120)
print(f"\nwrote {args.out / 'patching_resid_pre.png'}")

# %% [markdown]
# ## 5. The modular-addition model
#
# The pizza set-up, p = 59, read from its weights: its accuracy on all p^2 inputs and a proof of it
# (the modular-addition tutorial goes further).

# %%
modadd = load_model("modadd-p59")
task = ModAddTask.from_config(modadd.config)
accuracy = (margins(all_logits(modadd, task, torch.float32), task) > 0).double().mean().item()
proof = certify_exact(modadd, task)
print(
    f"\nmodadd-p59: accuracy on all {task.p}^2 inputs {accuracy:.5f}; proven from the weights "
    f"{proof.certified_accuracy:.5f} at {proof.proof_flops / brute_force_flops(modadd, task):.3f}x the cost "
    f"of brute force"
)
