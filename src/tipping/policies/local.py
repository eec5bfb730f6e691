"""What every local-weights engine (transformers, vLLM) shares: the model and adapter checks,
their identities (content fingerprints, the policy id written into records and cache keys), the
sampling a model plays with, and the chat-template tokenizer both backends render, score and
generate with, so they see exactly the same token sequences."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tipping.errors import InputError
from tipping.hashing import sha256_hex
from tipping.policies.base import ChoiceScores, Sampling
from tipping.policies.models import WEIGHT_PATTERNS, sampling_defaults, validate_model_dir
from tipping.turns import Turn, canonical_answer, clean_text

ADAPTER_CONFIG = "adapter_config.json"
_SENTINEL = "\x00tipping-sentinel\x00"


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def is_local(model: str) -> bool:
    """A path that exists, or one that cannot be a hub id ('org/name')."""
    path = Path(model)
    return path.exists() or model.startswith((".", "/", "~")) or len(path.parts) != 2


def check_model(model) -> str:
    """The model as a string; a local folder must be complete (an InputError names what is missing)."""
    model = str(model)
    if is_local(model):
        validate_model_dir(model)
    return model


def model_sampling(config, model: str) -> Sampling:
    """The sampling defaults of a loaded model (its PretrainedConfig; `model` names it for the family lookup)."""
    return sampling_defaults(config.to_dict() | {"_name_or_path": model})


def model_fingerprint(model: str) -> str:
    """Stable identity of a model: config.json content + weight file names and sizes for a local
    folder (fast on 16 GB checkpoints; a retrained model changes size or config), the id for a hub name."""
    path = Path(model)
    if not path.is_dir():
        return sha256_hex(model.encode())
    weights = [f for pattern in WEIGHT_PATTERNS for f in sorted(path.glob(pattern))]
    return sha256_hex((path / "config.json").read_bytes(), *(f"{f.name}:{f.stat().st_size}".encode() for f in weights))


def adapter_fingerprint(adapter: str) -> str:
    """sha256 of the adapter's files: adapters are small and retrained often, so hash content."""
    files = sorted(p for p in Path(adapter).iterdir() if p.is_file() and p.name.startswith("adapter_"))
    return sha256_hex(*(part for f in files for part in (f.name.encode(), f.read_bytes())))


def validate_adapter_dir(adapter: str) -> dict:
    """The adapter's config (its base model, rank), or an InputError naming what is missing."""
    path = Path(adapter)
    if not (path / ADAPTER_CONFIG).is_file():
        what = "no such folder" if not path.is_dir() else f"no {ADAPTER_CONFIG} in it"
        raise InputError(f"adapter {adapter}: {what}; expected a PEFT LoRA folder (a finetune step's output)")
    return json.loads((path / ADAPTER_CONFIG).read_text())


def policy_id(backend: str, model: str, adapter: str | None, dtype, *extra: str) -> str:
    """'transformers:smollm2@3fa1c2e0b7d4+dpo-round1@9be0a1f3c2d5/float32': readable names, content
    hashes, the dtype (a torch.dtype or its name) and what else changes the answers (`extra`)."""
    name = Path(model).name if is_local(model) else model
    text = f"{backend}:{name}@{model_fingerprint(model)[:12]}"
    if adapter:
        text += f"+{Path(adapter).name}@{adapter_fingerprint(adapter)[:12]}"
    return "/".join((text, str(dtype).removeprefix("torch."), *extra))


def choice_scores(totals: Sequence[float], prompt_tokens: int) -> ChoiceScores:
    """The scores of a turn's two canonical answers, in Options.labels() order (aligned, deviant)."""
    aligned, deviant = totals
    return ChoiceScores(aligned=aligned, deviant=deviant, prompt_tokens=prompt_tokens)


class ChatTokenizer:
    """Chat-template prompts and canonical answers as token ids."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        # the template's end-of-turn marker (<|im_end|>, <|eot_id|>): an answer that stops there
        end = self.render(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}],
            None,
            add_generation_prompt=False,
        )
        self.end_of_turn = end.split(_SENTINEL, 1)[1].strip() if _SENTINEL in end else ""

    def render(self, messages, enable_thinking: bool | None, add_generation_prompt: bool = True) -> str:
        kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        messages = [{"role": m["role"], "content": clean_text(m["content"])} for m in messages]
        return self.tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )

    def encode(self, text: str) -> list[int]:
        # the template already holds the special tokens: adding BOS again would shift every score
        return self.tok(clean_text(text), add_special_tokens=False)["input_ids"]

    def prompt_ids(self, turn: Turn, sampling: Sampling) -> list[int]:
        return self.encode(self.render(turn.conversation, sampling.enable_thinking))

    def answer_ids(self, label: str, sampling: Sampling) -> list[int]:
        """The canonical answer and the end of the turn, tokenized apart from the prompt so the two
        concatenate at the same boundary the model would generate across; capped at max_new_tokens."""
        return self.encode(canonical_answer(label) + self.end_of_turn)[: sampling.max_new_tokens]

    def answers(self, turn: Turn, sampling: Sampling) -> list[list[int]]:
        """Both canonical answers of a turn, in Options.labels() order: what choice_scores takes."""
        return [self.answer_ids(label, sampling) for label in turn.options.labels()]

    def chunk_ends(self, turn: Turn, sampling: Sampling, prompt: list[int]) -> list[int]:
        """Canonical chunk boundaries of a prompt (sorted, the last = len(prompt)): where the system
        prompt and each earlier prompt of the conversation stop agreeing with it, and where this
        prompt stops agreeing with itself rendered as a past turn. Round r's prompt usually extends
        round r-1's, so round r-1's chunks are round r's first chunks; the common-prefix check copes
        with BPE merges across a boundary and templates that rewrite past turns (Qwen3's <think>)."""
        messages, think = turn.conversation, sampling.enable_thinking
        texts = [self.render(messages[:i], think) for i, m in enumerate(messages) if m["role"] == "assistant"]
        if messages and messages[0]["role"] == "system":
            texts.append(self.render(messages[:1], think, add_generation_prompt=False))
        as_past = [*messages, {"role": "assistant", "content": "x"}]
        texts.append(self.render(as_past, think, add_generation_prompt=False))
        ends = {len(prompt)}
        ends.update(common_prefix(self.encode(text), prompt) for text in texts)
        return sorted(e for e in ends if e > 0)

    def stop_ids(self, generation_config) -> set[int]:
        ids = {self.tok.eos_token_id}
        eos = getattr(generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos])
        if self.end_of_turn:
            ids.add(self.tok.convert_tokens_to_ids(self.end_of_turn))
        return {i for i in ids if isinstance(i, int) and i >= 0}
