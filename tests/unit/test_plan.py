"""`tipping plan`: the arithmetic against hand-computed values, the refusal line, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tipping import plan
from tipping.cli import main
from tipping.config import Params
from tipping.errors import InputError
from tipping.policies.models import MODEL_SHAPES

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30


@pytest.fixture(scope="module")
def paper() -> Params:
    return Params.from_files(ROOT / "params.yaml")


def _row(rows, rule, model, testbed):
    (row,) = [r for r in rows if (r.rule, r.model, r.testbed) == (rule, model, testbed)]
    return row


def test_kv_bytes_per_token_by_hand():
    assert plan.kv_bytes_per_token("qwen3-8b") == 36 * 8 * 128 * 2 * 2 == 147_456
    assert plan.kv_bytes_per_token("llama-3.1-8b-instruct") == 32 * 8 * 128 * 2 * 2 == 131_072
    assert plan.kv_bytes_per_token("smollm2-135m-instruct") == 30 * 3 * 64 * 2 * 2 == 23_040


def test_tiny_shape_is_the_built_model(tiny_model):
    from transformers import AutoModelForCausalLM

    net = AutoModelForCausalLM.from_pretrained(tiny_model)
    c, s = net.config, MODEL_SHAPES["tiny-qwen3"]
    assert (s.layers, s.kv_heads, s.head_dim, s.hidden, s.context) == (
        c.num_hidden_layers, c.num_key_value_heads, c.head_dim, c.hidden_size, c.max_position_embeddings)
    assert s.params == net.num_parameters()


def test_paper_grid_turns_jobs_and_memory(paper):
    rows = plan.rows(paper, 80.0)
    for model in paper.models:
        single = _row(rows, "evaluate_policy", model, "single")
        multi = _row(rows, "evaluate_policy", model, "multi")
        assert single.turns == 64 * 6  # items x rounds, per condition
        assert multi.turns == 7 * 4 * 5 * 8 * 3 == 3_360  # games x thresholds x reward sets x agents x rounds
        assert single.jobs == 3 * 3 * 4 * 4  # defences x seeds x (evolution rounds + round 0) x conditions
        assert multi.jobs == 3 * 3 * 4 * 3
        assert single.new_tokens == 384 * 32_768 and multi.new_tokens == 3_360 * 3_276
        assert _row(rows, "rollout_episodes", model, "single").turns == 160 * 6
    # Qwen3-8B, batch 8 of 40,960-token turns (max_model_len), bf16; weights 8,190,735,360 x 2 bytes
    q = _row(rows, "evaluate_policy", "qwen3-8b", "single")
    assert q.kv_gib == pytest.approx(8 * 40_960 * 147_456 / GIB) == 45.0
    assert q.fits == int((0.9 * 80 * GIB - 8_190_735_360 * 2) // (40_960 * 147_456)) == 10
    llama = _row(rows, "evaluate_policy", "llama-3.1-8b-instruct", "single")
    assert llama.fits == int((0.9 * 80 * GIB - 8_030_261_248 * 2) // (40_960 * 131_072)) == 11


def test_small_overlay_total_turns_by_hand():
    ci = Params.from_files(ROOT / "params.yaml", ROOT / "config/ci.yaml")
    total = plan.estimate(ci, 80.0)["total"]["turns"]
    evaluate = (2 * 1 * 2 * 2) * (2 * 2)  # (defences x seeds x rounds 0..1 x conditions) x (2 items x 2 rounds)
    rollout = (2 * 1 * 1) * (2 * 2)  # (defences x seeds x evolution rounds) x (2 train items x 2 rounds)
    pairs = 4 * 2 * plan.PAIR_TRIES  # 4 train items, both sides, every try
    assert total == evaluate + rollout + pairs == 80


def test_prompt_bounds_follow_the_history(paper):
    """The upper bound adds max_new_tokens per past answer in view: rounds 2..6 of a window-5
    episode hold 1+2+3+4+5 answers, so 15 x (max_new - short answer) per item above the lower bound."""
    row = _row(plan.rows(paper, 80.0), "evaluate_policy", "qwen3-8b", "single")
    short = plan.tokens('{"choice": "comply"}') + plan.TOKENS_PER_MESSAGE
    assert row.prompt_tokens[1] - row.prompt_tokens[0] == 64 * 15 * (32_768 - short)


def _with(paper: Params, **settings) -> Params:
    data = paper.model_dump(mode="json")
    data["model_settings"]["qwen3-8b"].update(settings)
    return Params.load(data)


def test_a_batch_that_cannot_fit_is_refused_in_one_line(paper):
    bad = _with(paper, backend="transformers", batch_size=64, max_model_len=None)
    with pytest.raises(InputError) as exc:
        plan.check_fits(bad, "params.yaml")
    assert str(exc.value) == (
        "params.yaml: model_settings.qwen3-8b.batch_size 64: evaluate_policy, rollout_episodes and make_preference_pairs "
        "need 360 GiB of KV cache at 40,960 tokens a turn (max_model_len, else the model's context); at most 10 fit "
        "next to the 15 GiB of weights in 90% of 80 GiB (runtime.gpu_memory_gb)")
    plan.check_fits(paper, "params.yaml")  # the shipped batch fits
    data = bad.model_dump(mode="json")
    data["runtime"]["gpu_memory_gb"] = None
    plan.check_fits(Params.load(data), "params.yaml")  # no GPU memory given: nothing to check


def test_max_model_len_reaches_vllm_and_is_checked(paper):
    args = paper.sampling_args("qwen3-8b", "single")
    assert args[args.index("--max-model-len") + 1] == "40960"
    assert "--max-model-len" not in Params.from_files(ROOT / "params.yaml", ROOT / "config/ci.yaml").sampling_args(
        "tiny-qwen3", "single")
    with pytest.raises(InputError, match=r"field model_settings.qwen3-8b.max_model_len: 50000 > the model's context 40960"):
        _with(paper, max_model_len=50_000)


def test_plan_command_prints_the_table_and_json(capsys):
    assert main(["plan", "--params", str(ROOT / "params.yaml")]) == 0
    out = capsys.readouterr().out
    assert "evaluate_policy" in out and "GPU-hours" in out and "147,456 B/token" in out
    assert "decode 1,500, prefill 10,000" in out  # the assumed throughput is printed
    assert main(["plan", "--params", str(ROOT / "params.yaml"), "--json", "--throughput", "1-10B=3000,10000"]) == 0
    doubled = json.loads(capsys.readouterr().out)
    assert doubled["assumptions"]["throughput_tokens_per_s"]["1-10B"]["decode"] == 3000
    assert main(["plan", "--params", str(ROOT / "params.yaml"), "--throughput", "8B=fast"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "tipping: error: --throughput '8B=fast': expected CLASS=DECODE,PREFILL tokens/s, e.g. 1-10B=1500,10000"]
