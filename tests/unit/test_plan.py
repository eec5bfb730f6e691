"""`tipping plan`: the arithmetic against hand-computed values, the refusal line, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from tipping import pipeline, plan, plan_turns
from tipping.cli import main, parse_args
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
        c.num_hidden_layers,
        c.num_key_value_heads,
        c.head_dim,
        c.hidden_size,
        c.max_position_embeddings,
    )
    assert s.params == net.num_parameters()


def test_paper_grid_turns_jobs_and_memory(paper):
    rows = plan.rows(paper, 80.0, parse=parse_args)
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
    # the same Qwen3 row on the transformers backend: its prefix trie holds 131,072 tokens and each
    # turn's prompt (capped at the context) a second time
    q = _row(
        plan.rows(_with(paper, backend="transformers"), 80.0, parse=parse_args), "evaluate_policy", "qwen3-8b", "single"
    )
    assert q.kv_gib == pytest.approx((131_072 + 8 * 2 * 40_960) * 147_456 / GIB) == 108.0
    assert q.fits == int((0.9 * 80 * GIB - 8_190_735_360 * 2 - 131_072 * 147_456) // (2 * 40_960 * 147_456)) == 3


def test_small_overlay_total_turns_by_hand():
    ci = Params.from_files(ROOT / "params.yaml", ROOT / "config/ci.yaml")
    total = plan.estimate(ci, 80.0, parse=parse_args)["total"]["turns"]
    evaluate = (2 * 1 * 2 * 2) * (2 * 2)  # (defences x seeds x rounds 0..1 x conditions) x (2 items x 2 rounds)
    rollout = (2 * 1 * 1) * (2 * 2)  # (defences x seeds x evolution rounds) x (2 train items x 2 rounds)
    pairs = 4 * 2 * plan.PAIR_TRIES  # 4 train items, both sides, every try
    # 6 agents on a ring, 2 rounds, 1 game: 6 free agents (fraction 0), then 3 (0.5: 3 confederates);
    # the probe at degree 2: 1 first-round turn + 2 x 3 grid turns
    population = 6 * 2 + 3 * 2 + (1 + 2 * 3)
    assert total == evaluate + rollout + pairs + population == 105


def test_prompt_bounds_follow_the_history(paper):
    """The upper bound adds max_new_tokens per past answer in view: rounds 2..6 of a window-5
    episode hold 1+2+3+4+5 answers, so 15 x (max_new - short answer) per item above the lower bound."""
    row = _row(plan.rows(paper, 80.0, parse=parse_args), "evaluate_policy", "qwen3-8b", "single")
    short = plan.tokens('{"choice": "comply"}') + plan.TOKENS_PER_MESSAGE
    assert row.prompt_tokens[1] - row.prompt_tokens[0] == 64 * 15 * (32_768 - short)


def _with(paper: Params, **settings) -> Params:
    data = paper.model_dump(mode="json")
    data["model_settings"]["qwen3-8b"].update(settings)
    return Params.load(data)


def test_a_batch_that_cannot_fit_is_refused_in_one_line(paper):
    # vLLM: 64 turns x 40,960 tokens x 147,456 B = 360 GiB; (0.9 x 80 GiB - 2 x 8,190,735,360 B) //
    # (40,960 x 147,456 B) = 10
    with pytest.raises(InputError) as exc:
        plan.check_fits(_with(paper, backend="vllm", batch_size=64, max_model_len=None), "params.yaml")
    assert str(exc.value) == (
        "params.yaml: model_settings.qwen3-8b.batch_size 64: evaluate_policy, rollout_episodes and "
        "make_preference_pairs "
        "need 360 GiB of KV cache at 40,960 tokens a turn (max_model_len, else the model's context); at most 10 fit "
        "next to the 15 GiB of weights in 90% of 80 GiB (runtime.gpu_memory_gb)"
    )
    # transformers: its prefix trie holds 131,072 tokens besides, and each turn's prompt a second
    # time: 131,072 x 147,456 + 64 x 2 x 40,960 x 147,456 B = 738 GiB; at most
    # (77,309,411,328 - 16,381,470,720 - 19,327,352,832) // 12,079,595,520 = 3
    bad = _with(paper, backend="transformers", batch_size=64, max_model_len=None)
    with pytest.raises(InputError) as exc:
        plan.check_fits(bad, "params.yaml")
    assert str(exc.value) == (
        "params.yaml: model_settings.qwen3-8b.batch_size 64: evaluate_policy, rollout_episodes and "
        "make_preference_pairs need 738 GiB of KV cache (with the transformers backend's prefix trie: 131,072 "
        "tokens + the batch's prompts) at 40,960 tokens a turn (max_model_len, else the model's context); at most "
        "3 fit next to the 15 GiB of weights in 90% of 80 GiB (runtime.gpu_memory_gb)"
    )
    plan.check_fits(paper, "params.yaml")  # the shipped batch fits
    data = bad.model_dump(mode="json")
    data["runtime"]["gpu_memory_gb"] = None
    plan.check_fits(Params.load(data), "params.yaml")  # no GPU memory given: nothing to check


def test_max_model_len_reaches_vllm_and_is_checked(paper):
    args = pipeline.sampling_args(paper, "qwen3-8b", "single")
    assert args[args.index("--max-model-len") + 1] == "40960"
    assert "--max-model-len" not in pipeline.sampling_args(
        Params.from_files(ROOT / "params.yaml", ROOT / "config/ci.yaml"), "tiny-qwen3", "single"
    )
    with pytest.raises(
        InputError, match=r"field model_settings.qwen3-8b.max_model_len: 50000 > the model's context 40960"
    ):
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
        "tipping: error: --throughput '8B=fast': expected CLASS=DECODE,PREFILL tokens/s, e.g. 1-10B=1500,10000"
    ]


def test_params_from_the_published_shapes_by_hand():
    """Parameter counts from each config.json (vocab, hidden, intermediate, layers, heads, KV heads,
    head dim): attention q/k/v/o + gated MLP + norms per layer, embeddings (untied: x2) + final norm."""

    def count(vocab, hidden, inter, layers, heads, kv, head_dim, tied, qk_norm=False):
        attention = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2
        per_layer = attention + 3 * hidden * inter + 2 * hidden + (2 * head_dim if qk_norm else 0)
        return layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden

    assert MODEL_SHAPES["qwen3-8b"].params == count(151_936, 4096, 12_288, 36, 32, 8, 128, False, qk_norm=True)
    assert MODEL_SHAPES["llama-3.1-8b-instruct"].params == count(128_256, 4096, 14_336, 32, 32, 8, 128, False)
    assert MODEL_SHAPES["smollm2-135m-instruct"].params == count(49_152, 576, 1536, 30, 9, 3, 64, True)


def test_memory_bound_by_hand():
    """Weights + KV cache of a batch, at the dtype asked for (the benchmark's hook)."""
    assert plan.memory_bound_bytes("qwen3-8b", 8, 40_960) == 8_190_735_360 * 2 + 8 * 40_960 * 147_456
    assert plan.memory_bound_bytes("llama-3.1-8b-instruct", 4, 1000) == 8_030_261_248 * 2 + 4 * 1000 * 131_072
    # SmolLM2 on CPU in fp32: 4 bytes a value, so 46,080 B of KV per token
    assert plan.memory_bound_bytes("smollm2-135m-instruct", 16, 700, "float32") == 134_515_008 * 4 + 16 * 700 * (
        30 * 3 * 64 * 2 * 4
    )
    assert plan.memory_bound_bytes("smollm2-135m-instruct", 16, 700, "float32", trie=1_000) == 134_515_008 * 4 + (
        16 * 700 + 1_000
    ) * (30 * 3 * 64 * 2 * 4)
    assert plan.trie_tokens("transformers", 64, 900) == 131_072 + 64 * 900 and plan.trie_tokens("vllm", 64, 900) == 0


def test_job_resources_by_hand(paper):
    rows = plan.rows(paper, 80.0, parse=parse_args)
    q = plan.row_of(rows, "evaluate_policy", "qwen3-8b", "single")
    # host: 8 GiB + twice the bf16 weights (2 x 15.26 GiB) = 38.51 GiB = 41,353 MB (Snakemake's mem_mb: 10^6 bytes)
    assert plan.job_resources(q)["mem_mb"] == math.ceil((8 * GIB + 2 * 8_190_735_360 * 2) / 1e6) == 41_353
    # runtime: 10 min start + per job 384 turns x 32,768 new tokens at 1,500/s + the prompt bound at 10,000/s
    minutes = 10 + (384 * 32_768 / 1500 + q.prompt_tokens[1] / 10_000) / 60
    assert plan.job_resources(q) == {"mem_mb": 41_353, "gpu": 1, "runtime": math.ceil(minutes)}
    assert plan.job_resources(q, attempt=2) == {"mem_mb": 2 * 41_353, "gpu": 1, "runtime": 2 * math.ceil(minutes)}
    # rows by defence (align) and method (finetune)
    assert plan.row_of(rows, "align_policy", "qwen3-8b", "multi", "grpo").rule == "align_policy (grpo)"
    assert plan.row_of(rows, "finetune_policy", "llama-3.1-8b-instruct", "single").rule == "finetune_policy (sft)"


def test_plan_profile_sets_the_site(tmp_path, monkeypatch, capsys):
    """--profile NAME reads workflow/profiles/NAME's `config:` as snakemake applies it (values may
    arrive as text), so the plan sees the GPU memory the DAG-build check sees."""
    monkeypatch.chdir(ROOT)
    assert main(["plan", "--params", "params.yaml", "--profile", "slurm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["assumptions"]["gpu_memory_gib"] == 80
    site = tmp_path / "workflow/profiles/small"
    site.mkdir(parents=True)
    (site / "config.yaml").write_text(
        yaml.safe_dump(
            {"executor": "slurm", "config": {"runtime": {"gpu_memory_gb": "40", "throughput": ["1-10B=3000,20000"]}}}
        )
    )
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--params", str(ROOT / "params.yaml"), "--profile", "small", "--json"]) == 0
    small = json.loads(capsys.readouterr().out)
    assert small["assumptions"]["gpu_memory_gib"] == 40
    assert small["assumptions"]["throughput_tokens_per_s"]["1-10B"] == {
        "max_params": 1e10,
        "decode": 3000,
        "prefill": 20000,
    }
    q = [
        r for r in small["rules"] if (r["rule"], r["model"], r["testbed"]) == ("evaluate_policy", "qwen3-8b", "single")
    ]
    assert q[0]["fits"] == int((0.9 * 40 * GIB - 8_190_735_360 * 2) // (40_960 * 147_456)) == 3
    assert main(["plan", "--params", str(ROOT / "params.yaml"), "--profile", "nosuch"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "tipping: error: --profile nosuch: no workflow/profiles/nosuch/config.yaml (run from the repository root; "
        "profiles: small)"
    ]


@pytest.mark.slow
def test_smollm2_cache_and_weights_are_the_plans_bound(smollm2_model):
    """The plan's bound for SmolLM2 against the real model: the KV cache transformers allocates for
    a batch (DynamicCache after a forward pass) and the weights' bytes are exactly the two terms of
    memory_bound_bytes."""
    import torch
    from transformers import AutoModelForCausalLM

    net = AutoModelForCausalLM.from_pretrained(smollm2_model, dtype=torch.float32)
    batch, tokens = 3, 40
    with torch.no_grad():
        out = net(input_ids=torch.ones((batch, tokens), dtype=torch.long), use_cache=True)
    cache = sum(layer.keys.nbytes + layer.values.nbytes for layer in out.past_key_values.layers)
    weights = sum(p.nbytes for p in net.parameters())
    assert weights + cache == plan.memory_bound_bytes("smollm2-135m-instruct", batch, tokens, "float32")
    assert cache == batch * tokens * plan.kv_bytes_per_token("smollm2-135m-instruct", 4)


# --- populations (issue 13) -------------------------------------------------------------------------


def _population(base: Params, **population) -> Params:
    data = base.model_dump(mode="json")
    data["population"].update(population)
    return Params.load(data)


@pytest.fixture(scope="module")
def grid() -> Params:
    """Two networks, two fractions, two placements and population seeds other than the DAG's."""
    ci = Params.from_files(ROOT / "params.yaml", ROOT / "config/ci.yaml")
    return _population(
        ci,
        networks=["ring:k=2", "complete"],
        agents=[6],
        fractions=[0.0, 0.5],
        placements=["random", "clustered"],
        seeds=[3, 4],
    )


def test_population_jobs_are_the_dags(grid):
    """Jobs per row: the run folders common.smk's population_runs lists for that network, N and fraction
    (placements x population.seeds, not the top-level seeds); one probe per model."""
    from collections import Counter

    pop = grid.population
    folders = Counter(
        plan.population_key(pop.slug(net), n, f"{f:g}")
        for net in pop.networks
        for n in pop.agents
        for f in pop.fractions
        for _ in pop.placements
        for _ in pop.replicates(grid.seeds)
    )
    rows = plan.rows(grid, 80.0, parse=parse_args)
    assert (
        {r.testbed: r.jobs for r in rows if r.rule == "population_run"}
        == folders
        == {"ring_k2 n6 f0": 4, "ring_k2 n6 f0.5": 4, "complete n6 f0": 4, "complete n6 f0.5": 4}
    )
    (probe,) = [r for r in rows if r.rule == "population_probe"]
    assert (probe.jobs, probe.testbed) == (1, plan.POPULATION_PROBE)


@pytest.mark.parametrize("network", ["ring_k2", "complete"])
@pytest.mark.parametrize("fraction", ["0", "0.5"])
def test_population_row_is_what_the_job_asks_the_policy(grid, tmp_path, network, fraction):
    """Run the job as the rule runs it (its arguments, scripted:comply): the policy's turns (records
    of non-confederates) are the row's turns/job at every placement and seed, and their prompts,
    read back from prompts.jsonl, hold the row's lower-bound prompt tokens exactly (the plan plays
    the aligned answer, as scripted:comply does; forced choice scores each prompt twice)."""
    pop = grid.population
    row = plan.job_row(
        plan.rows(grid, 80.0, parse=parse_args),
        "population_run",
        {"model": "tiny-qwen3", "network": network, "agents": "6", "fraction": fraction},
    )
    for placement in pop.placements:
        for seed in pop.seeds:
            out = tmp_path / f"{placement}{seed}"
            assert (
                main(
                    [
                        "run",
                        "population",
                        *pipeline.population_args(grid, network, 6, fraction),
                        "--placement",
                        placement,
                        "--seed",
                        str(seed),
                        "--policy",
                        "scripted:comply",
                        "--no-progress",
                        "--out",
                        str(out),
                    ]
                )
                == 0
            )
            records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
            asked = [r for r in records if not r["confederate"]]
            assert len(asked) == row.turns == (6 - round(float(fraction) * 6)) * 2  # free agents x rounds (1 game)
            if (placement, seed) == (pop.placements[0], pop.seeds[0]):  # the job the row played
                prompts = {x["prompt_sha"]: x["messages"] for x in map(json.loads, (out / "prompts.jsonl").open())}
                scored = 2 if grid.model_settings["tiny-qwen3"].decision == "choice" else 1  # sequences a turn
                assert (
                    scored
                    * sum(
                        plan.tokens(m["content"]) + plan.TOKENS_PER_MESSAGE
                        for r in asked
                        for m in prompts[r["prompt_sha"]]
                    )
                    == row.prompt_tokens[0]
                )


def test_population_tokens_follow_the_decision_and_the_probe_always_scores(grid):
    """population_run generates multi.max_new_tokens per turn for a generating model (the rule passes
    the multi sampling flags); the probe scores two sequences per turn whatever the decision, on
    games x (1 first-round turn + 2 x (degree + 1) grid turns)."""
    paper = _population(
        Params.from_files(ROOT / "params.yaml"), networks=["ring:k=2"], agents=[6], fractions=[0.5], probe_degree=3
    )
    rows = plan.rows(paper, 80.0, parse=parse_args)
    run = plan.row_of(rows, "population_run", "qwen3-8b", "ring_k2 n6 f0.5")
    assert run.turns == 3 * 10 and run.new_tokens == run.turns * paper.multi.max_new_tokens == 30 * 3276
    assert run.prompt_tokens[1] > run.prompt_tokens[0]  # past answers of up to max_new_tokens in view
    probe = plan.row_of(rows, "population_probe", "qwen3-8b", plan.POPULATION_PROBE)
    assert probe.turns == 1 * (1 + 2 * (3 + 1)) and probe.new_tokens == 0
    assert (
        probe.prompt_tokens[0]
        == probe.prompt_tokens[1]
        == 2 * sum(t for *_, t, _ in plan_turns.probed(tuple(pipeline.population_probe_args(paper)), parse_args))
    )


def test_no_population_networks_no_population_rows(paper):
    assert paper.population.networks == []
    assert not [r for r in plan.rows(paper, 80.0, parse=parse_args) if r.rule.startswith("population")]


def test_population_gpu_hours_by_rule(grid):
    total = plan.estimate(grid, 80.0, parse=parse_args)["total"]
    rows = plan.rows(grid, 80.0, parse=parse_args)
    assert total["gpu_hours_by_rule"]["population_run"] == round(
        sum(r.gpu_hours for r in rows if r.rule == "population_run"), 1
    )
    assert list(total["gpu_hours_by_rule"])[-2:] == ["population_run", "population_probe"]
