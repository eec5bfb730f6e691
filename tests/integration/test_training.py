"""Real TRL steps on the tiny random Qwen3 (seconds each): DPO, GRPO, SFT, merge, the GRPO
reward, crash safety (kill -9 then rerun) and the one-line errors of bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest
import yaml
from held import start_held, wait_held
from safetensors.torch import load_file

from tipping.cli import main
from tipping.outputs import read_jsonl, write_jsonl
from tipping.policies import Sampling, load_policy
from tipping.training.pairs import load_prompts
from tipping.training.rewards import ChoiceReward
from tipping.turns import Options, canonical_answer

SCORE = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=16)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def items(tmp):
    """Short single-agent items: training steps on them take a few ms."""
    path = tmp / "items.jsonl"
    write_jsonl(
        path,
        [
            {
                "id": f"toy-{i}",
                "scenario": "toy",
                "system_prompt": "You are a worker.",
                "user_prompt": f"Task {i}: keep the rule or break it?",
                "compliant": "keep",
                "violating": "break",
                "compliant_reward": 1.0,
                "violating_reward": 2.0,
            }
            for i in range(4)
        ],
    )
    return path


@pytest.fixture(scope="module")
def pairs(tmp, tiny_model, items):
    """Choice-mode pairs made by the tiny model through the CLI."""
    out = tmp / "pairs.jsonl"
    assert (
        main(
            [
                "align",
                "pairs",
                "--items",
                str(items),
                "--policy",
                f"transformers:{tiny_model}",
                "--decision",
                "choice",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def warm(tmp, tiny_model, items):
    """An SFT adapter that answers in the canonical JSON form, either label: the random model
    never parses, and GRPO needs rewards that differ within a group to move at all."""
    data = tmp / "warm.jsonl"
    write_jsonl(
        data,
        [
            {"messages": [*p.messages, {"role": "assistant", "content": canonical_answer(label)}]}
            for p in load_prompts(items)
            for label in p.options.labels()
        ],
    )
    out = tmp / "warm"
    assert (
        main(
            [
                "evolve",
                "finetune",
                "--model",
                str(tiny_model),
                "--data",
                str(data),
                "--out",
                str(out),
                "--max-steps",
                "30",
                "--lr",
                "1e-2",
                "--batch-size",
                "8",
                "--grad-accum",
                "1",
                "--save-steps",
                "0",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return out


def weights(adapter):
    return load_file(adapter / "adapter_model.safetensors")


def differs(a, b) -> bool:
    assert a.keys() == b.keys()
    return any(not a[k].equal(b[k]) for k in a)


def margins(policy_spec: str, items) -> list[float]:
    """log P(chosen) - log P(rejected) on every training prompt."""
    scores = load_policy(policy_spec).score_choices([p.turn() for p in load_prompts(items)], SCORE)
    return [s.aligned - s.deviant for s in scores]


def test_pairs_in_choice_mode_from_the_tiny_model(pairs):
    rows = read_jsonl(pairs)
    assert len(rows) == 4 and all(0 < r["p_deviant"] < 1 for r in rows)
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": canonical_answer("keep")}]


def test_dpo_two_steps_raise_the_chosen_margin(tmp, tiny_model, items, pairs, capsys):
    out = tmp / "dpo"
    assert (
        main(
            [
                "align",
                "dpo",
                "--model",
                str(tiny_model),
                "--pairs",
                str(pairs),
                "--out",
                str(out),
                "--max-steps",
                "2",
                "--lr",
                "5e-3",
                "--batch-size",
                "2",
                "--grad-accum",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "dpo: 2 steps on 4 rows" in capsys.readouterr().out
    log = [r for r in read_jsonl(out / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2] and "rewards/margins" in log[0]
    config = json.loads((out / "train_config.json").read_text())
    assert config["params"]["beta"] == 0.1 and config["params"]["lora"]["r"] == 8 and config["device"] == "cpu"
    assert "trl" in config["versions"] and not (tmp / "dpo.partial").exists()
    before = margins(f"transformers:{tiny_model}", items)
    after = margins(f"transformers:{tiny_model}@{out}", items)
    assert all(a > b for a, b in zip(after, before)), (before, after)


def test_merge_matches_the_adapter(tmp, tiny_model, items, pairs):
    adapter = tmp / "dpo"
    if not adapter.exists():
        pytest.skip("needs the DPO test's adapter")
    assert (
        main(["align", "merge", "--model", str(tiny_model), "--adapter", str(adapter), "--out", str(tmp / "merged")])
        == 0
    )
    assert margins(f"transformers:{tmp / 'merged'}", items) == pytest.approx(
        margins(f"transformers:{tiny_model}@{adapter}", items), abs=1e-4
    )


def test_grpo_two_steps_with_the_testbed_reward_change_the_adapter(tmp, tiny_model, items, warm):
    params = tmp / "params.yaml"  # a full params.yaml: the grpo section is read
    params.write_text(
        yaml.safe_dump(
            {
                "dpo": {"beta": 0.5},
                "grpo": {
                    "temperature": 0.05,
                    "max_steps": 2,
                    "batch_size": 8,
                    "grad_accum": 1,
                    "learning_rate": 1e-2,
                    "max_completion_length": 12,
                },
            }
        )
    )
    out = tmp / "grpo"
    assert (
        main(
            [
                "align",
                "grpo",
                "--model",
                str(tiny_model),
                "--items",
                str(items),
                "--init-adapter",
                str(warm),
                "--params",
                str(params),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    log = [r for r in read_jsonl(out / "train_log.jsonl") if "loss" in r]
    assert len(log) == 2 and any(r["rewards/choice/std"] > 0 for r in log), log
    assert differs(weights(out), weights(warm))
    assert json.loads((out / "train_config.json").read_text())["params"]["beta"] == 0.04


def test_full_parameter_grpo_writes_a_model_folder(tmp, tiny_model, items):
    params = tmp / "full.yaml"
    params.write_text(
        yaml.safe_dump(
            {"full_parameter": True, "max_steps": 1, "batch_size": 4, "grad_accum": 1, "max_completion_length": 4}
        )
    )
    out = tmp / "grpo-full"
    assert (
        main(
            [
                "align",
                "grpo",
                "--model",
                str(tiny_model),
                "--items",
                str(items),
                "--limit",
                "1",
                "--params",
                str(params),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    load_policy(f"transformers:{out}")


def finetune(tmp, tiny_model, method, data, init, name, **schedule):
    """`tipping evolve finetune` continuing the adapter `init`; returns the output folder."""
    params = tmp / f"{name}.yaml"  # one section's fields at the top level
    params.write_text(
        yaml.safe_dump(
            {"max_steps": 2, "learning_rate": 1e-2, "batch_size": 2, "grad_accum": 1, "warmup_ratio": 0.0, **schedule}
        )
    )
    out = tmp / name
    assert (
        main(
            [
                "evolve",
                "finetune",
                "--model",
                str(tiny_model),
                "--init-adapter",
                str(init),
                "--data",
                str(data),
                "--method",
                method,
                "--params",
                str(params),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return out


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_finetune_continues_the_init_adapter(tmp, tiny_model, items, pairs, warm, method):
    data = pairs
    if method == "sft":
        data = tmp / "kept.jsonl"
        write_jsonl(
            data,
            [
                {"messages": [*p.messages, {"role": "assistant", "content": canonical_answer("break")}]}
                for p in load_prompts(items)
            ],
        )
    out = finetune(tmp, tiny_model, method, data, warm, f"evolved-{method}")
    assert differs(weights(out), weights(warm))
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == []  # TRL's frozen 'ref' copy is not saved
    config = json.loads((out / "train_config.json").read_text())
    assert (config["method"], config["init_adapter"], config["global_step"]) == (method, str(warm), 2)
    # training starts from the init adapter's weights: one step at learning rate 0 (its whole schedule is
    # warmup, which starts at 0) gives back exactly the adapter it started from, for two different inits
    # (an ignored --init-adapter would give a fresh LoRA, whose B matrices are 0, both times)
    for init in (warm, out):
        kept = finetune(tmp, tiny_model, method, data, init, f"lr0-{method}-{init.name}", max_steps=1, warmup_ratio=1.0)
        assert not differs(weights(kept), weights(init)), f"a step at lr 0 changed the adapter it continued ({init})"


def test_the_reward_reads_answers_with_the_testbed_parser():
    reward = ChoiceReward((1.0, 0.1, 0.0))
    completions = [
        [{"role": "assistant", "content": text}]
        for text in (
            '<think>{"choice": "break"}</think> {"choice": "keep"}',
            '{"choice": "Break"}',
            "I keep my job.",
            "keep",
        )
    ]
    n = len(completions)
    labels = {"aligned": ["keep"] * n, "deviant": ["break"] * n, "testbed": ["single"] * n}
    assert reward(completions, **labels) == [1.0, 0.1, 0.0, 1.0]
    # upstream's first-match parser scores the reasoning's choice
    assert (
        ChoiceReward(parser="paper").score(
            '<think>{"choice": "break"}</think> {"choice": "keep"}', Options("keep", "break"), "single"
        )
        == 0.1
    )


def test_kill_9_during_training_then_rerun_resumes_to_a_complete_adapter(tmp, tiny_model, pairs):
    out = tmp / "killed"
    argv = [
        "align",
        "dpo",
        "--model",
        str(tiny_model),
        "--pairs",
        str(pairs),
        "--out",
        str(out),
        "--max-steps",
        "40",
        "--batch-size",
        "1",
        "--grad-accum",
        "1",
        "--lr",
        "1e-3",
        "--save-steps",
        "5",
        "--device",
        "cpu",
    ]
    checkpoints = tmp / "killed.partial" / "checkpoints"
    # killed right after the 2nd checkpoint was saved (step 10 of 40)
    proc = start_held(
        "transformers.trainer_callback:CallbackHandler.on_save",
        2,
        tmp / "held",
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_held(proc, tmp / "held")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # never a half adapter under the final name
    (checkpoints / "checkpoint-999").mkdir()  # as if killed while saving: no trainer_state.json
    assert main(argv) == 0
    config = json.loads((out / "train_config.json").read_text())
    assert config["resumed_from"] == "checkpoint-10"  # the newest complete checkpoint, not the torn 999
    assert config["global_step"] == 40 and not (tmp / "killed.partial").exists()
    load_policy(f"transformers:{tiny_model}@{out}")  # loads as a policy


def test_a_changed_config_starts_afresh_instead_of_resuming(tmp, tiny_model, pairs):
    out = tmp / "fresh"
    argv = [
        "align",
        "dpo",
        "--model",
        str(tiny_model),
        "--pairs",
        str(pairs),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
        "--save-steps",
        "1",
        "--device",
        "cpu",
    ]
    stale = tmp / "fresh.partial" / "checkpoints" / "checkpoint-1"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")  # another config's checkpoint: no stamp matches it
    assert main(argv) == 0
    assert json.loads((out / "train_config.json").read_text())["resumed_from"] is None
    assert main([*argv[:-2], "--lr", "1e-4", "--device", "cpu"]) == 0  # a rerun replaces the adapter
    assert json.loads((out / "train_config.json").read_text())["params"]["learning_rate"] == 1e-4


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tipping: error: "), err
    return err


def test_bad_input_is_one_line_and_exit_2(tmp, tiny_model, items, pairs, capsys):
    dpo = ["align", "dpo", "--model", str(tiny_model), "--out", str(tmp / "never"), "--device", "cpu"]
    bad = tmp / "bad-pairs.jsonl"
    rows = read_jsonl(pairs)
    del rows[1]["rejected"]
    write_jsonl(bad, rows)
    assert "line 2: missing field 'rejected'" in one_line_error(capsys, [*dpo, "--pairs", str(bad)])
    bad.write_text("")
    assert "holds no pairs" in one_line_error(capsys, [*dpo, "--pairs", str(bad)])

    no_tokenizer = tmp / "no-tokenizer"
    no_tokenizer.mkdir(exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model / name, no_tokenizer / name)
    err = one_line_error(capsys, [*dpo[:2], "--model", str(no_tokenizer), *dpo[4:], "--pairs", str(pairs)])
    assert "missing tokenizer" in err

    half = tmp / "half-adapter"
    half.mkdir(exist_ok=True)
    (half / "adapter_config.json").write_text("{}")
    assert "train_config.json missing" in one_line_error(
        capsys, [*dpo, "--pairs", str(pairs), "--init-adapter", str(half)]
    )

    params = tmp / "bad-params.yaml"
    params.write_text(yaml.safe_dump({"dpo": {"betta": 0.2}}))
    assert "field betta: Extra inputs are not permitted" in one_line_error(
        capsys, [*dpo, "--pairs", str(pairs), "--params", str(params)]
    )

    grpo = [
        "align",
        "grpo",
        "--model",
        str(tiny_model),
        "--items",
        str(items),
        "--out",
        str(tmp / "never"),
        "--device",
        "cpu",
    ]
    err = one_line_error(capsys, [*grpo, "--batch-size", "3", "--grad-accum", "1"])
    assert "TRL rejects these params (batch_size=3, grad_accum=1, num_generations=4)" in err
    params.write_text(yaml.safe_dump({"grpo": {"use_vllm": True}}))
    assert "use_vllm needs a CUDA host" in one_line_error(capsys, [*grpo, "--params", str(params)])
    params.write_text(yaml.safe_dump({"grpo": {"max_prompt_length": 16}}))
    assert "item toy-0: prompt of" in one_line_error(capsys, [*grpo, "--params", str(params)])
    assert not (tmp / "never").exists()
