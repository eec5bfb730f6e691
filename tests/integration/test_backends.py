"""The transformers backend on the real tiny model (and SmolLM2, slow): seeded batched
generation, forced-choice scores, adapters, and whole `tipping run single` runs incl. a kill -9."""

import json
import math
import os
import signal
import subprocess
from pathlib import Path

import pytest
from fixtures_models import make_turns, save_lora
from held import start_held, wait_held

from tipping.cli import main
from tipping.errors import InputError
from tipping.policies import Sampling, load_policy
from tipping.policies.transformers_backend import TransformersPolicy
from tipping.turns import Options, Turn

SHORT = Sampling(temperature=0.8, top_p=0.95, top_k=50, max_new_tokens=24)


@pytest.fixture(scope="module")
def hf_tiny(tiny_model):
    policy = TransformersPolicy(tiny_model)
    yield policy
    policy.close()


def test_generate_counts_tokens(hf_tiny):
    turns = make_turns(4)
    completions = hf_tiny.generate(turns, SHORT)
    assert len(completions) == 4
    prompts = [c.prompt_tokens for c in completions]
    assert prompts == sorted(prompts) and len(set(prompts)) == 4  # the turns grow in length
    assert all(1 <= c.completion_tokens <= SHORT.max_new_tokens for c in completions)
    assert all(isinstance(c.text, str) for c in completions)


def test_same_seed_same_text_whatever_the_batch(hf_tiny):
    turns = make_turns(4)
    batch = hf_tiny.generate(turns, SHORT)
    assert hf_tiny.generate(turns, SHORT) == batch
    assert [hf_tiny.generate([t], SHORT)[0] for t in turns] == batch  # alone vs in a batch of 4
    assert hf_tiny.generate(turns[::-1], SHORT) == batch[::-1]
    other_seed = [Turn(t.messages, t.options, t.round, t.agent, t.seed + 1, t.item_id) for t in turns]
    assert hf_tiny.generate(other_seed, SHORT) != batch


def test_finished_rows_leave_the_batch_without_changing_the_others(tiny_model):
    policy = TransformersPolicy(tiny_model)  # its own: the test changes the stop tokens
    turns = make_turns(4)
    tokens = policy._decode([policy._prompt(t, SHORT) for t in turns], [t.seed for t in turns], SHORT)
    stop = tokens[0][2]
    policy.stop = policy.stop | {stop}  # row 0 now ends at its third token, while others go on
    batch = policy.generate(turns, SHORT)
    assert batch[0].completion_tokens == tokens[0].index(stop) + 1
    assert max(c.completion_tokens for c in batch) > batch[0].completion_tokens
    assert [policy.generate([t], SHORT)[0] for t in turns] == batch


def test_greedy_equals_transformers_generate(hf_tiny):
    import torch

    turns, greedy = make_turns(3), Sampling(temperature=0.0, max_new_tokens=16)
    ours = hf_tiny.generate(turns, greedy)
    tok = hf_tiny.chat.tok
    enc = tok(
        [hf_tiny.chat.render(t.conversation, None) for t in turns],
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    )
    with torch.inference_mode():
        out = hf_tiny.model.generate(**enc, do_sample=False, max_new_tokens=16, pad_token_id=tok.pad_token_id)
    reference = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert [c.text for c in ours] == reference


def test_scores_are_finite_deterministic_and_batch_invariant(hf_tiny):
    import torch

    turns = make_turns(4)
    scores = hf_tiny.score_choices(turns, SHORT)
    assert all(math.isfinite(s.aligned) and math.isfinite(s.deviant) and s.aligned < 0 for s in scores)
    assert hf_tiny.score_choices(turns, SHORT) == scores
    assert hf_tiny.score_choices(turns[2:3], SHORT)[0] == scores[2]  # exactly the same floats
    # the KV-cache path agrees with one plain forward pass over prompt + answer
    prompt, answer = hf_tiny.chat.prompt_ids(turns[0], SHORT), hf_tiny.chat.answer_ids("violate", SHORT)
    with torch.inference_mode():
        logp = hf_tiny.model(torch.tensor([prompt + answer])).logits[0].log_softmax(-1)
    full = sum(logp[len(prompt) - 1 + i, token].item() for i, token in enumerate(answer))
    assert scores[0].deviant == pytest.approx(full, abs=1e-4)
    assert answer[-1] == hf_tiny.chat.tok.convert_tokens_to_ids("<|im_end|>")


def test_odd_inputs_do_not_crash(hf_tiny):
    long_label = "a very long option " * 200
    turns = [
        Turn(({"role": "user", "content": ""},), Options("", "x"), 1, 0, 1, "empty"),
        Turn(({"role": "user", "content": "bad \ud800 surrogate \udfff"},), Options("ok", long_label), 1, 0, 2, "odd"),
    ]
    sampling = Sampling(max_new_tokens=8)
    assert len(hf_tiny.generate(turns, sampling)) == 2
    scores = hf_tiny.score_choices(turns, sampling)
    assert all(math.isfinite(s.aligned) and math.isfinite(s.deviant) for s in scores)
    assert len(hf_tiny.chat.answer_ids(long_label, sampling)) == 8  # capped at max_new_tokens


def test_adapter_changes_scores_and_id(hf_tiny, tiny_model, tiny_adapter):
    adapted = TransformersPolicy(tiny_model, adapter=tiny_adapter)
    turns = make_turns(2)
    base, tuned = hf_tiny.score_choices(turns, SHORT), adapted.score_choices(turns, SHORT)
    assert all(abs(a.aligned - b.aligned) > 1e-3 for a, b in zip(base, tuned))
    assert adapted.id != hf_tiny.id and adapted.id.startswith(hf_tiny.id.split("/")[0] + "+tiny-lora@")


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # the wider base exists only in memory
def test_adapter_for_another_base_is_an_input_error(tiny_model, tmp_path):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(1)
    wider = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=514,
            hidden_size=96,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
        )
    )
    wider.name_or_path = "models/wider-qwen3"  # what PEFT records as the base
    adapter = save_lora(None, tmp_path / "wide-lora", model=wider)
    with pytest.raises(InputError, match=r"adapter .*wide-lora does not fit model .*trained on 'models/wider-qwen3'"):
        TransformersPolicy(tiny_model, adapter=adapter)


def test_missing_model_and_adapter_are_input_errors(tiny_model, tmp_path):
    with pytest.raises(InputError, match="no such model folder"):
        load_policy(f"transformers:{tmp_path / 'absent'}")
    with pytest.raises(InputError, match=r"adapter .*absent-lora: no such folder"):
        load_policy(f"transformers:{tiny_model}@{tmp_path / 'absent-lora'}")


# --- whole runs through the CLI ------------------------------------------------------------------


def run_single(model, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "single",
        "--policy",
        f"transformers:{model}",
        "--items",
        "single-test",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize("decision", ["generate", "choice"])
def test_cli_run_then_rerun_is_free_and_identical(tiny_model, tmp_path, decision):
    args = run_single(
        tiny_model, tmp_path / "run", "--limit", "4", "--rounds", "2", "--decision", decision, "--max-new-tokens", "32"
    )
    assert main(args) == 0
    records = (tmp_path / "run" / "records.jsonl").read_bytes()
    first = json.loads((tmp_path / "run" / "run.json").read_text())["stats"]
    assert first["model_calls"] == 8 and first["prompt_tokens"] > 0
    assert main(args) == 0
    again = json.loads((tmp_path / "run" / "run.json").read_text())["stats"]
    assert again["model_calls"] == 0 and again["cache_hits"] == 8
    assert (tmp_path / "run" / "records.jsonl").read_bytes() == records
    rows = [json.loads(line) for line in records.splitlines()]
    assert all(r["policy"].startswith("transformers:tiny-qwen3@") for r in rows)
    if decision == "choice":
        assert all(0 < r["p_deviant"] < 1 and r["valid"] for r in rows)


def test_kill_9_then_resume_gives_identical_records(tiny_model, tmp_path):
    """A run killed mid-way and rerun writes the same records, byte for byte, as a run never killed."""
    options = ["--limit", "12", "--rounds", "3", "--max-new-tokens", "48", "--batch-size", "1"]  # 36 turns
    argv = run_single(tiny_model, tmp_path / "killed", *options)
    # killed right after the 5th answer reached the cache (each batch is one turn)
    proc = start_held(
        "tipping.cache:ResponseCache.put",
        5,
        tmp_path / "held",
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_held(proc, tmp_path / "held")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()

    assert main(argv) == 0
    stats = json.loads((tmp_path / "killed" / "run.json").read_text())["stats"]
    assert (stats["cache_hits"], stats["model_calls"]) == (5, 31)  # the 5 cached answers are reused, no more
    assert main(run_single(tiny_model, tmp_path / "whole", *options)) == 0
    assert (tmp_path / "killed" / "records.jsonl").read_bytes() == (tmp_path / "whole" / "records.jsonl").read_bytes()


@pytest.mark.slow
def test_smollm2_choice_mode(smollm2_model, tmp_path):
    args = run_single(smollm2_model, tmp_path / "run", "--limit", "4", "--rounds", "2", "--decision", "choice")
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["valid"] and 0 <= r["p_deviant"] <= 1 for r in rows)
    assert all(r["policy"].startswith("transformers:smollm2-135m-instruct@") for r in rows)
