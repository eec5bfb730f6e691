"""Policies: a model (+ adapter) with sampling settings, behind one interface.

Spec strings (the --policy flag):
    transformers:PATH_OR_ID[@ADAPTER_DIR]
    vllm:PATH_OR_ID[@ADAPTER_DIR]
    openai:BASE_URL#MODEL
    scripted:comply | scripted:violate | scripted:flip@K | scripted:collude:K
"""

from __future__ import annotations

from tipping.errors import InputError
from tipping.policies.base import ChoiceScores, Completion, Policy, Sampling

BACKENDS = ("transformers", "vllm", "openai", "scripted")

__all__ = ["BACKENDS", "ChoiceScores", "Completion", "Policy", "Sampling", "load_policies", "load_policy", "split_spec"]


def split_spec(spec: str) -> tuple[str, str, str | None]:
    """'vllm:models/x@adapters/y' -> ('vllm', 'models/x', 'adapters/y')."""
    backend, sep, rest = spec.partition(":")
    if not sep or backend not in BACKENDS or not rest:
        raise InputError(
            f"--policy {spec!r}: expected BACKEND:TARGET with BACKEND one of {', '.join(BACKENDS)} "
            "(e.g. transformers:models/smollm2-135m-instruct, scripted:comply)"
        )
    if backend in ("transformers", "vllm") and "@" in rest:
        model, adapter = rest.rsplit("@", 1)
        return backend, model, adapter
    return backend, rest, None


def load_policy(spec: str, *, dtype: str | None = None, max_model_len: int | None = None) -> Policy:
    """Build the policy a spec names. Heavy backends are imported only when asked for.
    `dtype` applies to local engines (default: bf16 on GPU, fp32 on CPU for transformers);
    `max_model_len` to vLLM."""
    backend, target, adapter = split_spec(spec)
    local = {"dtype": dtype} if dtype else {}
    if backend == "scripted":
        from tipping.policies.scripted import ScriptedPolicy

        return ScriptedPolicy(target)
    if backend == "transformers":
        from tipping.policies.transformers_backend import TransformersPolicy

        return TransformersPolicy(target, adapter=adapter, **local)
    if backend == "vllm":
        from tipping.policies.vllm_backend import VLLMPolicy

        return VLLMPolicy(
            target, adapter=adapter, **local, **({"max_model_len": max_model_len} if max_model_len else {})
        )
    base_url, sep, model = target.rpartition("#")
    if not sep or not base_url or not model:
        raise InputError(
            f"--policy {spec!r}: expected openai:BASE_URL#MODEL, e.g. openai:http://127.0.0.1:8000/v1#smollm2"
        )
    from tipping.policies.openai_backend import OpenAIPolicy

    return OpenAIPolicy(base_url, model)


def load_policies(specs: list[str], *, dtype: str | None = None, max_model_len: int | None = None) -> list[Policy]:
    """Several policies (a mixed population's groups). vLLM specs of one model share one engine, each
    a view with its own adapter (LoRA per request), instead of one engine per spec."""
    parsed = [split_spec(spec) for spec in specs]
    shared = [(target, adapter) for backend, target, adapter in parsed if backend == "vllm"]
    if len(shared) < 2 or len({target for target, _ in shared}) > 1:
        return [load_policy(spec, dtype=dtype, max_model_len=max_model_len) for spec in specs]
    from tipping.policies.local import validate_adapter_dir
    from tipping.policies.vllm_backend import VLLMPolicy

    adapters = sorted({adapter for _, adapter in shared if adapter})
    engine = VLLMPolicy(
        shared[0][0],
        enable_lora=bool(adapters),
        max_lora_rank=max((validate_adapter_dir(a).get("r", 8) for a in adapters), default=None),
        max_loras=max(1, len(adapters)),
        **({"dtype": dtype} if dtype else {}),
        **({"max_model_len": max_model_len} if max_model_len else {}),
    )
    return [
        engine.with_adapter(adapter)
        if backend == "vllm"
        else load_policy(spec, dtype=dtype, max_model_len=max_model_len)
        for spec, (backend, _, adapter) in zip(specs, parsed)
    ]
