"""The OpenAI-compatible HTTP backend: any server speaking /v1/chat/completions (vLLM's
`python -m vllm.entrypoints.openai.api_server`, hosted APIs), for models that do not fit locally.

Requests run concurrently (max_concurrency threads on one HTTP client); each retries with
exponential backoff and jitter on connection errors, timeouts, 429 and 5xx, then fails with an
InputError that names the server. Other 4xx answers fail at once: retrying cannot fix them.

Forced-choice scoring needs two things hosted APIs lack, so it works against vLLM servers:
  - POST /tokenize (at the server root) with the messages renders the chat template server-side,
    exactly as the server does for chat requests, and returns the prompt token ids;
  - POST /v1/completions with a token-id prompt, echo=true and logprobs=0 returns the
    log-probability of every prompt token (the legacy OpenAI completions format).
The answer is tokenized apart from the prompt and closed with the template's end-of-turn token,
as in the local backends, so all three score the same token sequences.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tipping.errors import InputError
from tipping.policies.base import ChoiceScores, Completion, Policy, Sampling
from tipping.policies.models import sampling_defaults
from tipping.turns import Turn, canonical_answer

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_SENTINEL = "tipping-sentinel"


class _Unsupported(Exception):
    """The server lacks an endpoint or field that scoring needs."""


class OpenAIPolicy(Policy):
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 600.0,
        retries: int = 5,
        backoff: float = 1.0,
    ):
        """retries: tries per request in all; backoff: the first wait in seconds (doubles per try)."""
        import httpx

        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")  # vLLM serves /tokenize beside /v1, not under it
        self.model, self.retries, self.backoff = model, max(1, retries), backoff
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers accept any key
        self.client = httpx.Client(
            timeout=timeout,
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=max_concurrency),
        )
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="openai")
        self.id = f"openai:{self.base_url}#{model}"
        self.default_sampling = sampling_defaults(model)
        self._answer_ids: dict[str, list[int]] = {}
        self._end_of_turn: list[int] | None = None

    # --- HTTP ---------------------------------------------------------------------------------

    def _post(self, url: str, body: dict) -> dict:
        import httpx

        last = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random()))
            try:
                response = self.client.post(url, json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out
                last = f"could not be reached ({type(exc).__name__}: {exc})"
                continue
            if response.status_code in RETRY_STATUS or response.status_code >= 500:
                last = f"answered {response.status_code}"
                continue
            if response.status_code in (404, 405):
                raise _Unsupported(f"{url} answered {response.status_code}")
            if response.status_code >= 400:
                raise InputError(f"server {url} refused the request: {response.status_code} {response.text[:300]}")
            return response.json()
        raise InputError(f"server {url} {last} {self.retries} times; is it up and serving {self.model!r}?")

    def _map(self, fn, items) -> list:
        return list(self.pool.map(fn, items))

    # --- generate -----------------------------------------------------------------------------

    def generate(self, turns: Sequence[Turn], sampling: Sampling) -> list[Completion]:
        return self._map(lambda t: self._chat(t, sampling), turns)

    def _chat(self, turn: Turn, s: Sampling) -> Completion:
        body = {
            "model": self.model,
            "messages": turn.conversation,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_new_tokens,
            "seed": turn.seed,
        }
        # non-standard fields only when set: hosted APIs reject unknown parameters
        if s.top_k:
            body["top_k"] = s.top_k
        if s.enable_thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": s.enable_thinking}
        try:
            data = self._post(f"{self.base_url}/chat/completions", body)
        except _Unsupported as exc:
            raise InputError(f"{exc}: not an OpenAI-compatible chat server (expected BASE_URL ending in /v1)") from None
        usage = data.get("usage") or {}
        choice = data["choices"][0]
        return Completion(
            choice["message"].get("content") or "",
            usage.get("prompt_tokens", 0),
            usage.get("completion_tokens", 0),
            truncated=choice.get("finish_reason") == "length",
        )

    # --- score --------------------------------------------------------------------------------

    def score_choices(self, turns: Sequence[Turn], sampling: Sampling) -> list[ChoiceScores]:
        try:
            return self._map(lambda t: self._score(t, sampling), turns)
        except _Unsupported as exc:
            raise InputError(
                f"server {self.base_url}: this server returns no prompt logprobs ({exc}); use --decision generate"
            ) from None

    def _tokenize(self, **body) -> list[int]:
        return self._post(f"{self.root}/tokenize", {"model": self.model, **body})["tokens"]

    def _answer(self, label: str, s: Sampling) -> list[int]:
        if self._end_of_turn is None:
            # what closing an assistant turn adds after its text: <|im_end|>, <|eot_id|>, ...
            messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}]
            closed = self._tokenize(messages=messages, add_generation_prompt=False)
            open_ = self._tokenize(messages=messages, add_generation_prompt=False, continue_final_message=True)
            self._end_of_turn = closed[len(open_) :][:1] if closed[: len(open_)] == open_ else []
        if label not in self._answer_ids:  # labels repeat across turns; dict writes are thread-safe
            self._answer_ids[label] = self._tokenize(prompt=canonical_answer(label), add_special_tokens=False)
        return (self._answer_ids[label] + self._end_of_turn)[: s.max_new_tokens]

    def _score(self, turn: Turn, s: Sampling) -> ChoiceScores:
        body = {"messages": turn.conversation, "add_generation_prompt": True}
        if s.enable_thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": s.enable_thinking}
        prompt = self._tokenize(**body)
        answers = [self._answer(label, s) for label in turn.options.labels()]
        data = self._post(
            f"{self.base_url}/completions",
            {
                "model": self.model,
                "prompt": [prompt + a for a in answers],
                "max_tokens": 1,
                "temperature": 0.0,
                "echo": True,
                "logprobs": 0,
            },
        )
        totals = []
        for choice in sorted(data["choices"], key=lambda c: c["index"]):
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
            if not logprobs or len(logprobs) < len(prompt) + len(answers[len(totals)]):
                raise _Unsupported("no echoed token_logprobs in /v1/completions")
            totals.append(sum(logprobs[len(prompt) : len(prompt) + len(answers[len(totals)])]))
        return ChoiceScores(aligned=totals[0], deviant=totals[1], prompt_tokens=len(prompt))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()
