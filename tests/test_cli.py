"""The hooked-bilinear command line: to-llama, bilinearize (resumable), push; errors as one line, exit status 1."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from hooked_bilinear.cli import _parsers, main, parser
from tests.llama import write_llama


def test_to_llama_command(tmp_path, capsys):
    assert main(["to-llama", "ts-synthetic-2l", str(tmp_path / "out")]) == 0
    assert "max |logit difference|" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "config.json").read_text())["hidden_act"] == "linear"
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert main(["to-llama", "ts-synthetic-2l", str(tmp_path / "out")]) == 1  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err


def test_bilinearize_command_and_resume(tmp_path, capsys, caplog):
    folder, _ = write_llama(tmp_path / "swiglu", hidden_act="silu", std=0.05)
    torch.save(torch.randint(0, 330, (4000,)), tmp_path / "tokens.pt")
    args = [
        "bilinearize",
        str(folder),
        str(tmp_path / "tokens.pt"),
        str(tmp_path / "bilinear"),
        "--steps",
        "8",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--warmup-steps",
        "2",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert json.loads((tmp_path / "bilinear" / "config.json").read_text())["hidden_act"] == "linear"
    progress = json.loads((tmp_path / "bilinear.state" / "step-00000008" / "progress.json").read_text())
    assert progress["step"] == 8 and len(progress["history"]) == 8 and progress["settings"]["recipe"] == "paper"
    assert (tmp_path / "bilinear.state" / "metrics.csv").read_text().count("\n") == 9  # header + 8 steps
    assert "estimated training memory per rank" in caplog.text


def test_bad_input_is_one_line_error(tmp_path, capsys):
    folder, _ = write_llama(tmp_path / "swiglu", hidden_act="silu")
    torch.save(torch.full((100,), 5000), tmp_path / "tokens.pt")
    assert main(["bilinearize", str(folder), str(tmp_path / "tokens.pt"), str(tmp_path / "out"), "--seq-len", "8"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hooked-bilinear bilinearize: error:") and "outside the model's vocabulary" in err
    assert not (tmp_path / "out").exists()


def test_push_command_reports_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder, _ = write_llama(tmp_path / "model")
    assert main(["push", str(folder), "alice/m"]) == 1
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and f"hooked-bilinear push {folder} alice/m" in err


def test_save_command(tmp_path, capsys):
    assert main(["save", "ts-synthetic-2l", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "llama"
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert main(["save", "modadd-p59", str(tmp_path / "mod"), "--as-llama", "True", "--token-ids-only"]) == 1
    err = capsys.readouterr().err
    assert "normalization is false" in err and "--as-llama False" in err and not (tmp_path / "mod").exists()
    assert main(["save", "ts-synthetic-2l", str(tmp_path / "out")]) == 1
    assert "pass --overwrite to replace it" in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "hooked_bilinear", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "bilinearize" in result.stdout and "to-llama" in result.stdout


def test_modadd_certify_prints_one_json_object(capsys):
    assert main(["modadd", "certify", "--json"]) == 0  # the default model: modadd-p113
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    result = json.loads(out)
    for key in (
        "p",
        "accuracy",
        "true_min_margin",
        "certified_min_margin",
        "certified_accuracy",
        "proof_flops",
        "brute_force_flops",
        "compression_ratio",
    ):
        assert key in result
    assert result["p"] == 113 and result["accuracy"] > 0.99 and result["sound"]
    assert result["certified_accuracy"] == result["accuracy"] and result["cost_ratio"] < 1
    assert result["certified_min_margin"] <= result["true_min_margin"]


def test_modadd_certify_refuses_a_model_of_another_task(capsys):
    assert main(["modadd", "certify", "--model", "ts-synthetic-2l"]) == 1
    assert "not a modular-addition model" in capsys.readouterr().err


def test_modadd_train_refuses_an_existing_folder(tmp_path, capsys):
    assert main(["modadd", "train", "--setup", "pizza", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("epochs", ["0", "-5"])
def test_modadd_train_refuses_a_non_positive_epoch_count_before_creating_anything(tmp_path, capsys, epochs):
    out = tmp_path / "model"
    assert main(["modadd", "train", "--setup", "pizza", str(out), "--max-epochs", epochs]) == 1
    assert f"--max-epochs {epochs}" in capsys.readouterr().err and not out.exists()


def test_modadd_train_runs_every_stage_of_the_setup_with_max_epochs_on_the_first(tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from hooked_bilinear.toy.modadd import train

    ran = []
    real = train.train_recipe

    def tiny(task, recipe, **kwargs):  # the set-up's recipe, recorded, then run at a toy size for a step each
        ran.append(recipe)
        return real(task, tuple(replace(s, d_model=16, d_hidden=16, max_epochs=1) for s in recipe), progress=False)

    monkeypatch.setattr(train, "train_recipe", tiny)
    out = tmp_path / "model"
    assert main(["modadd", "train", "--setup", "nanda", str(out), "--max-epochs", "3", "--seed", "7"]) == 0
    (recipe,) = ran
    assert [(s.max_epochs, s.weight_decay, s.seed) for s in recipe] == [(3, 5.0, 7), (500, 10.0, 7)]
    stages = json.loads((out / "TRAINING.json").read_text())["stages"]
    assert [stage["max_epochs"] for stage in stages] == [3, 500]
    assert "the last epoch is the model" in capsys.readouterr().out


def test_modadd_certify_bad_frequencies_is_one_line_error(capsys):
    assert main(["modadd", "certify", "--model", "modadd-p59", "--frequencies", "1,x"]) == 1
    assert "--frequencies 1,x" in capsys.readouterr().err
    assert main(["modadd", "certify", "--model", "modadd-p59", "--frequencies", "99"]) == 1
    assert "lie in 1..29" in capsys.readouterr().err
    assert main(["modadd", "certify", "--model", "no-such-model"]) == 1


def test_a_torchrun_process_ends_without_the_interpreter_shutdown():
    """Under torchrun the command line leaves through os._exit with its code, after flushing: the gloo threads FSDP2
    keeps alive cannot abort a finished run during finalization (atexit handlers, the proof, do not run)."""
    import os

    program = (
        "import atexit\nfrom hooked_bilinear.cli import main\natexit.register(print, 'finalized')\n"
        "print('flushed', end='')\nraise SystemExit(main(['push', 'no-such-folder', 'user/repo']))"
    )
    for world_size, finalized in (("2", False), ("1", True)):
        env = {**os.environ, "WORLD_SIZE": world_size}
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 1, result.stderr
        assert "error:" in result.stderr and result.stdout.startswith("flushed")
        assert ("finalized" in result.stdout) == finalized


def test_torchrun_two_processes_on_a_jsonl_corpus(tmp_path):
    """The documented multi-process form: torchrun -m hooked_bilinear bilinearize, a jsonl corpus with another text
    column, gloo on CPU; logging and the saved model come from rank 0 alone."""
    import os

    from tests.distributed_runs import TEXTS, free_port

    folder, _ = write_llama(tmp_path / "swiglu", hidden_act="silu", std=0.05)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS))
    from hooked_bilinear.loading.pretrained import resolve_folder

    for name in ("tokenizer.json", "tokenizer_config.json"):  # the model's own tokenizer (vocab 330)
        (folder / name).write_bytes((resolve_folder("ts-synthetic-2l") / name).read_bytes())
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "hooked_bilinear",
        "bilinearize",
        str(folder),
        str(tmp_path / "corpus.jsonl"),
        str(tmp_path / "out"),
        "--text-column",
        "body",
        "--steps",
        "6",
        "--warmup-steps",
        "1",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--checkpoint-every",
        "3",
        "--device",
        "cpu",
        "--strategy",
        "fsdp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # a crash names its stack
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("estimated training memory per rank") == 1 and "2 processes (fsdp)" in result.stderr
    assert result.stdout.count("bilinear model written") == 1
    assert json.loads((tmp_path / "out" / "config.json").read_text())["hidden_act"] == "linear"
    assert (tmp_path / "out.state" / "metrics.csv").read_text().count("\n") == 7


def test_bilinearize_data_errors_name_the_flag(tmp_path, capsys, monkeypatch):
    import importlib.util

    # positions for the default --seq-len (256): a longer sequence than the model's positions is refused first
    folder, _ = write_llama(tmp_path / "swiglu", hidden_act="silu", max_position_embeddings=512)
    torch.save(torch.randint(0, 330, (500,)), tmp_path / "tokens.pt")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = str(tmp_path / "out")
    assert main(["bilinearize", str(folder), str(tmp_path / "tokens.pt"), out, "--report-to", "tensorboard"]) == 1
    assert "--report-to tensorboard needs the tensorboard package" in capsys.readouterr().err
    assert main(["bilinearize", str(folder), "HuggingFaceFW/fineweb", out, "--dataset-config", "sample-10BT"]) == 1
    assert "needs a tokenizer" in capsys.readouterr().err  # the folder has none
    from hooked_bilinear.loading.pretrained import resolve_folder

    tokenizer = ["--tokenizer", str(resolve_folder("ts-synthetic-2l"))]
    assert (
        main(["bilinearize", str(folder), "HuggingFaceFW/fineweb", out, "--dataset-config", "sample-10BT", *tokenizer])
        == 1
    )
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    (tmp_path / "c.jsonl").write_text('{"body": "x y"}\n')
    assert main(["bilinearize", str(folder), str(tmp_path / "c.jsonl"), out, "--device", "cpu", *tokenizer]) == 1
    assert "no column 'text'" in capsys.readouterr().err
    assert main(["bilinearize", str(folder), str(tmp_path / "c.jsonl"), out, "--tokenizer", str(tmp_path)]) == 1
    assert "--tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _imported_modules(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -m hooked_bilinear ARGS`: the result and the top-level names of the modules imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hooked_bilinear", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time")
    }
    return result, names


@pytest.mark.parametrize(
    "args", [["--help"], ["bilinearize", "--help"], ["vision", "train", "--help"], ["modadd", "certify", "--help"]]
)
def test_help_answers_without_importing_torch(args):
    result, names = _imported_modules(*args)
    assert result.returncode == 0 and "usage: hooked-bilinear" in result.stdout
    assert "argparse" in names  # the listing is read
    assert not names & {"torch", "transformers", "transformer_lens", "numpy"}, sorted(names)


def test_the_console_script_answers_help_without_importing_torch():
    script = Path(sys.executable).parent / "hooked-bilinear"
    if not script.is_file():
        pytest.skip("the console script is not installed beside this Python")
    program = (
        "import runpy, sys; sys.argv = [sys.argv[1], '--help']; "
        "exit_code = 0\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n"
        "    exit_code = e.code\nassert exit_code == 0, exit_code\nassert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", program, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_command_after_a_lazy_start_has_the_whole_api():
    result = subprocess.run(
        [sys.executable, "-m", "hooked_bilinear", "modadd", "certify", "--model", "ts-synthetic-2l"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # the command ran (the API and registrations loaded after parsing): the model loads, and is refused for its task
    assert result.returncode == 1 and "modadd" in result.stderr, result.stderr


def _every_parser() -> list[argparse.ArgumentParser]:
    return _parsers(parser())


def test_every_option_of_every_command_shows_its_default():
    checked = 0
    for each in _every_parser():
        formatter = each._get_formatter()
        for action in each._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            text = formatter._expand_help(action) if action.help else ""
            assert "default" in text and "default: None" not in text, f"{each.prog} {action.option_strings}: {text!r}"
            checked += 1
    assert checked > 50


def test_a_mistyped_flag_shows_the_sub_commands_usage(capsys):
    for argv, prog in [
        (["bilinearize", "m", "d", "o", "--stepz", "3"], "hooked-bilinear bilinearize"),
        (["vision", "train", "out", "--lrr", "3"], "hooked-bilinear vision train"),
        (["modadd", "certify", "--jsn", "1"], "hooked-bilinear modadd certify"),
    ]:
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"usage: {prog} ") and f"{prog}: error: unrecognized arguments: {argv[-2]}" in err


def test_the_recipe_flag_offers_every_recipe_with_its_schedule():
    from hooked_bilinear.making.recipe import RECIPES

    (bilinearize_parser,) = [p for p in _every_parser() if p.prog.endswith(" bilinearize")]
    (recipe,) = [a for a in bilinearize_parser._actions if "--recipe" in a.option_strings]
    assert list(recipe.choices) == list(RECIPES)
    for r in RECIPES.values():
        assert f"{r.name}: {r.schedule} schedule" in recipe.help


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--steps", "10", "--warmup-steps", "20"], "--warmup-steps 20 is longer than the run (--steps 10)"),
        (["--steps", "10", "--warmup-steps", "2", "--seq-len", "200"], "--seq-len 200 is longer than the model's 128"),
    ],
)
def test_bilinearize_refuses_a_warmup_longer_than_the_run_or_too_long_sequences(tmp_path, capsys, flags, named):
    folder, _ = write_llama(tmp_path / "swiglu", hidden_act="silu")
    torch.save(torch.randint(0, 330, (4000,)), tmp_path / "tokens.pt")
    out = tmp_path / "out"
    assert main(["bilinearize", str(folder), str(tmp_path / "tokens.pt"), str(out), "--device", "cpu", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hooked-bilinear bilinearize: error:") and named in err, err
    assert not out.exists() and not (tmp_path / "out.state").exists()


@pytest.mark.slow
def test_dashboard_command_defaults(tmp_path, capsys):
    """With only MODEL, --layer and --out: the shipped model's held-out stories, its SAEs, its frequent tokens and
    live output features; `dashboard digits` for the shipped classifier."""
    from hooked_bilinear.dashboard import read_data

    out = tmp_path / "layer0.html"
    assert main(["dashboard", "ts-synthetic-2l", "--layer", "0", "--out", str(out)]) == 0
    assert "dashboard of 48 directions written to" in capsys.readouterr().out
    data = read_data(out.read_text(encoding="utf-8"))
    kinds = [d["kind"] for d in data["directions"]]
    assert kinds == ["contrast"] * 32 + ["feature"] * 16
    assert data["saes"] == {"input": "blocks.0.mlp.hook_in", "output": "blocks.0.mlp.hook_out"}
    assert all("interactions" in d for d in data["directions"][32:])
    assert data["token_set"]["n_tokens"] == 108 * 128
    assert main(["dashboard", "digits", "--out", str(tmp_path / "digits.html")]) == 0
    assert "dashboard of 10 classes" in capsys.readouterr().out
    assert len(read_data((tmp_path / "digits.html").read_text(encoding="utf-8"))["classes"]) == 10


def test_dashboard_command_bad_input(tmp_path, capsys):
    out = tmp_path / "d.html"
    cases = [
        (["--layer", "0", "--out", str(tmp_path / "no" / "d.html")], "output folder"),
        (["--out", str(out)], "--layer"),
        (["--layer", "7", "--out", str(out)], "--layer 7: ts-synthetic-2l has layers 0..1"),
        (["--layer", "0", "--out", str(out), "--directions", "zebra"], "'zebra' is not a token"),
        (["--layer", "1", "--out", str(out), "--sae", "ts-synthetic-2l/blocks.0.mlp.hook_in"], "needs an SAE on"),
        (["--layer", "0", "--out", str(out), "--tokens", str(tmp_path / "none.pt")], "no such file"),
    ]
    for args, message in cases:
        assert main(["dashboard", "ts-synthetic-2l", *args]) == 1
        assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_sae_from_a_token_file(tmp_path, capsys) -> None:
    import numpy as np

    from hooked_bilinear import sae as S

    tokens = np.random.default_rng(0).integers(5, 330, size=8 * 128, dtype=np.int32)
    np.save(tmp_path / "tokens.npy", tokens)
    argv = ["train-sae", "ts-synthetic-2l", str(tmp_path / "tokens.npy"), str(tmp_path / "saes")]
    options = ["--steps", "6", "--batch-size", "256", "--buffer-size", "1024", "--k", "8", "--expansion", "2"]
    hooks = ["--hooks", "blocks.0.mlp.hook_in,blocks.1.mlp.hook_out"]
    assert main([*argv, *hooks, *options, "--cache", str(tmp_path / "acts"), "--model-batch-size", "4"]) == 0
    for hook in ("blocks.0.mlp.hook_in", "blocks.1.mlp.hook_out"):
        sae = S.load(str(tmp_path / "saes" / hook))
        assert (sae.hook_name, sae.d_sae, sae.k) == (hook, 256, 8)
    assert (tmp_path / "acts" / "manifest.json").is_file()
    assert main([*argv, *hooks, *options]) == 1  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv[:3], str(tmp_path / "other"), "--hooks", "blocks.7.mlp.hook_in", *options]) == 1
    assert "--hooks: ts-synthetic-2l has no hook 'blocks.7.mlp.hook_in'" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_train_sae_help_states_sae_train_configs_own_defaults() -> None:
    """train-sae leaves the SAE options unset so SAETrainConfig decides; its help must quote SAETrainConfig's
    defaults, not numbers that drift from them."""
    import re
    from dataclasses import fields

    from hooked_bilinear.sae.train import SAETrainConfig

    defaults = {f.name: f.default for f in fields(SAETrainConfig)}
    train_sae = next(p for p in _parsers(parser()) if p.prog.endswith(" train-sae"))
    actions = {a.dest: a for a in train_sae._actions}
    for name in ("steps", "batch_size", "k", "expansion", "lr"):
        assert actions[name].default is None  # unset: SAETrainConfig's default applies
        stated = re.search(r"default: (?:SAETrainConfig's, )?([0-9.e-]+)\)", actions[name].help)
        assert stated is not None, actions[name].help
        assert float(stated.group(1)) == defaults[name], (name, actions[name].help, defaults[name])
