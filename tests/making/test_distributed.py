"""bilinearize on 2 processes (gloo, CPU, spawned) against 1: DDP and FSDP2 give the weights of one process with the
same global batch (with and without gradient accumulation); interrupted 2-process runs resume on 1 and on 2 processes
to the same result; every final model is exactly bilinear."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tests.distributed_runs import free_port, run, worker, write_corpus

# Why a tolerance, and this one: 2 ranks average two half-batch gradients where 1 process takes one mean over the
# batch (and FSDP reduce-scatters), so gradients differ by float32 rounding (~1e-7 relative). AdamW's update is
# lr * m / sqrt(v), so relative gradient differences pass through to updates of at most lr = 1e-3 per step; over 20
# steps that bounds drift at ~1e-6 unless rounding flips something discrete. Observed: 1.2e-7 (one float32 ulp at
# 1.0, on a norm weight) for every run. 2e-6 leaves 16x margin and is far below what a different batch order
# changes (test_the_comparison_can_fail), so the comparison can fail.
ATOL = 2e-6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    write_corpus(tmp / "corpus")
    single = run(tmp, "single")  # 1 process, no process group
    mp.spawn(worker, args=(2, free_port(), str(tmp)), nprocs=2, join=True)
    spawned = torch.load(tmp / "results.pt", weights_only=False)
    resumed = {}
    for name in ("ddp", "fsdp"):
        resumed[f"{name}-resume1"] = run(tmp, f"{name}-resume1")  # 2-process checkpoint at step 10, 1 process on
    resumed["single-micro"] = run(tmp, "single-micro", micro_batch_size=2)  # 1 process, 2 micro-batches
    resumed["single-tied"] = run(tmp, "single-tied", tied=True)
    return {"single": single, **spawned, **resumed, "tmp": tmp}


def test_two_ranks_tokenize_the_stream_of_one(runs):
    (one,) = (runs["tmp"] / "cache").glob("tokens-*.npy")
    (two,) = (runs["tmp"] / "cache-2-processes").glob("tokens-*.npy")
    assert (
        one.name == two.name
        and np.array_equal(np.load(one), np.load(two))
        and not list((runs["tmp"] / "cache-2-processes").glob("*part*"))
    )


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.parametrize(
    "name",
    [
        "ddp",
        "fsdp",
        "ddp-resume2",
        "fsdp-resume2",
        "ddp-resume1",
        "fsdp-resume1",
        "ddp-micro",
        "fsdp-micro",
        "single-micro",
    ],
)
def test_two_processes_give_the_weights_of_one(runs, name):
    difference = max_difference(runs["single"]["state"], runs[name]["state"])
    expected_steps = list(range(10, 20)) if "resume" in name else list(range(20))  # resumed from step 10's checkpoint
    assert runs[name]["steps_run"] == expected_steps
    assert difference <= ATOL, f"{name}: max |weight difference| vs 1 process {difference:.3g}"
    print(f"{name}: max |weight difference| vs 1 process {difference:.3g}")


def test_tied_embeddings_under_fsdp(runs):
    """FSDP2 trains a shared lm_head / embed_tokens like 1 process, and the gathered model keeps them one tensor."""
    assert runs["fsdp-tied"]["tied"] and runs["single-tied"]["tied"]
    assert max_difference(runs["single-tied"]["state"], runs["fsdp-tied"]["state"]) <= ATOL


def test_the_comparison_can_fail(runs):
    """A run on another seed's batch order differs by far more than ATOL: equality above is not vacuous."""
    other = runs["tmp"] / "other-seed"
    from hooked_bilinear.making.bilinearize import bilinearize
    from hooked_bilinear.making.corpus import Corpus
    from tests.distributed_runs import RUN, tokenizer
    from tests.llama import tiny_llama

    model = bilinearize(
        tiny_llama("silu", std=0.05),
        Corpus(str(runs["tmp"] / "corpus"), text_column="story"),
        tokenizer=tokenizer(),
        checkpoint_dir=other,
        data_cache=runs["tmp"] / "cache",
        device="cpu",
        **{**RUN, "seed": 1},
    )
    assert max_difference(runs["single"]["state"], model.state_dict()) > 100 * ATOL
    shutil.rmtree(other)


@pytest.mark.parametrize(
    "name", ["single", "ddp", "fsdp", "ddp-resume2", "fsdp-resume2", "ddp-resume1", "fsdp-resume1", "ddp-micro"]
)
def test_every_final_model_is_exactly_bilinear(runs, name):
    result = runs[name]
    assert result["hidden_act"] == "linear" and result["fold"] <= 1e-5
    state = result["state"]
    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(0))
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.llama import TINY

    model = LlamaForCausalLM(LlamaConfig(**{**TINY, "hidden_act": "linear"}))
    model.load_state_dict(state)  # the plain stock architecture holds every saved tensor: no gate scale left over
    for layer in model.model.layers:
        mlp = layer.mlp
        expected = (x @ mlp.gate_proj.weight.T * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T
        torch.testing.assert_close(mlp(x), expected, atol=1e-6, rtol=1e-5)


def test_metrics_and_loss_curve_match_across_process_counts(runs):
    import csv

    def rows(name):
        with open(runs["tmp"] / name / "metrics.csv") as f:
            return list(csv.DictReader(f))

    single = rows("single")
    for name in ("ddp", "fsdp", "ddp-resume1", "fsdp-resume2", "ddp-micro", "single-micro"):
        other = rows(name)
        assert [r["step"] for r in other] == [r["step"] for r in single] == [str(s) for s in range(1, 21)]
        for a, b in zip(single, other):  # the loss of the global batch, whatever the processes and micro-batches
            assert float(a["beta"]) == float(b["beta"]) and abs(float(a["loss"]) - float(b["loss"])) <= 1e-5
    assert (runs["tmp"] / "ddp" / "loss_curve.png").stat().st_size > 10_000


def test_each_rank_gets_its_own_gpu_and_memory_share(monkeypatch):
    """Under torchrun, rank r on a machine takes GPU LOCAL_RANK (read before the process group exists; no GPU needed
    to check), and the per-rank memory estimate shards under FSDP, not under DDP."""
    from hooked_bilinear.making.distributed import device_for
    from hooked_bilinear.making.train import TrainConfig, memory_estimate
    from tests.llama import tiny_llama

    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert device_for("cuda") == torch.device("cuda", 3) and device_for("cuda:1") == torch.device("cuda", 1)
    assert device_for("cpu") == torch.device("cpu")
    model, config = tiny_llama("silu"), TrainConfig(batch_size=8, seq_len=16)
    one, ddp, fsdp = (memory_estimate(model, config, n, s) for n, s in ((1, "none"), (4, "ddp"), (4, "fsdp")))
    assert ddp["optimizer"] == one["optimizer"] == 4 * fsdp["optimizer"]
    assert ddp["activations"] == one["activations"] / 4 == fsdp["activations"]  # a quarter of the batch each


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_and_the_run_resumes(tmp_path):
    """torchrun --max-restarts 1 on 2 processes, rank 1 SIGKILLed as step 7 begins: torchrun restarts the group and
    bilinearize resumes from the last complete checkpoint (step 6) by itself, ending bit-identical to an uninterrupted
    run on the same 2 processes (run first in the same torchrun)."""
    from tests import fault_runs

    got = fault_runs.torchrun(tmp_path / "restarted", kill_step=7, kill_rank=1)
    assert "error" not in got, got.get("error")
    assert got["attempt"] == 1 and got["resumed_from"] == 6
    reference = got["reference"]["state"]
    assert all(torch.equal(reference[k], got["state"][k]) for k in reference)
