"""Round-synchronous rollout: every episode's (and every agent's) turns of round r go to the
backend as one batch, chunked by `batch_size`; the response cache sits in front of it.

Upstream sends one request at a time; batching a whole round is where the speed comes from.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from tqdm import tqdm

from tipping.cache import ResponseCache
from tipping.policies.base import Policy, Sampling
from tipping.turns import Answer, Turn, canonical_answer, clean_text

Decision = Literal["generate", "choice"]
DECISIONS = ("generate", "choice")
BATCH_SIZE = 64  # turns per backend call, unless the model's settings say otherwise


@dataclass
class RolloutStats:
    turns: int = 0
    model_calls: int = 0  # turns the model computed (0 on a full cache hit)
    cache_hits: int = 0
    batches: int = 0
    wall_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["turns_per_s"] = round(self.turns / self.wall_s, 3) if self.wall_s else None
        return d


def choice_probability(aligned: float, deviant: float, temperature: float) -> float:
    """P(deviant) from the two answers' log-likelihoods, tempered like sampling would be.
    At temperature 0 the choice is the argmax (ties go to the aligned option)."""
    if temperature <= 0:
        return 1.0 if deviant > aligned else 0.0
    z = (deviant - aligned) / temperature
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def sample_deviant(p_deviant: float, seed: int) -> bool:
    return random.Random(seed).random() < p_deviant


class Engine:
    def __init__(
        self,
        policy: Policy,
        decision: Decision,
        sampling: Sampling,
        cache: ResponseCache | None = None,
        batch_size: int = BATCH_SIZE,
        progress: bool = True,
    ):
        self.policy, self.decision, self.sampling = policy, decision, sampling
        self.cache, self.batch_size, self.progress = cache, max(1, batch_size), progress
        self.stats = RolloutStats()
        self.prompts: dict[str, list] = {}  # prompt_sha -> conversation, in first-seen order
        self._bar = None

    def _compute(self, turns: Sequence[Turn]) -> list[dict]:
        if self.decision == "generate":
            return [
                {
                    "text": clean_text(c.text),
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "truncated": c.truncated,
                }
                for c in self.policy.generate(turns, self.sampling)
            ]
        return [
            {"aligned": s.aligned, "deviant": s.deviant, "prompt_tokens": s.prompt_tokens}
            for s in self.policy.score_choices(turns, self.sampling)
        ]

    def _to_answer(self, turn: Turn, value: dict) -> Answer:
        if self.decision == "generate":
            # cache entries written before `truncated` existed read as not truncated
            return Answer(
                value["text"],
                value["prompt_tokens"],
                value["completion_tokens"],
                truncated=value.get("truncated", False),
            )
        p = choice_probability(value["aligned"], value["deviant"], self.sampling.temperature)
        label = turn.options.deviant if sample_deviant(p, turn.seed) else turn.options.aligned
        return Answer(canonical_answer(label), value["prompt_tokens"], 0, p)

    def answer(self, turns: Sequence[Turn]) -> list[Answer]:
        """Answers for one round of turns: cached ones read, the rest computed in chunks and
        cached right away (a kill loses at most the chunk in flight)."""
        values: list[dict | None] = [None] * len(turns)
        keys = (
            [ResponseCache.key(self.policy.id, self.decision, t, self.sampling) for t in turns]
            if self.cache
            else [None] * len(turns)
        )
        todo = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache else None
            if hit is None:
                todo.append(i)
            else:
                values[i] = hit
                self.stats.cache_hits += 1
        self._advance(len(turns) - len(todo))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            computed = self._compute([turns[i] for i in chunk])
            self.stats.batches += 1
            self.stats.model_calls += len(chunk)
            for i, value in zip(chunk, computed):
                values[i] = value
                if self.cache:
                    self.cache.put(keys[i], value)
            self._advance(len(chunk))
        answers = [self._to_answer(t, v) for t, v in zip(turns, values)]
        self.stats.turns += len(turns)
        self.stats.prompt_tokens += sum(a.prompt_tokens for a in answers)
        self.stats.completion_tokens += sum(a.completion_tokens for a in answers)
        return answers

    def _advance(self, n: int) -> None:
        if self._bar is not None and n:
            self._bar.update(n)
            done = self._bar.n or 1
            self._bar.set_postfix(cache_hit=f"{self.stats.cache_hits / done:.0%}", refresh=False)

    def run(self, episodes: Sequence) -> list[dict]:
        """Play every episode to its last round; returns the records in a fixed order
        (round, then episode, then agent), independent of batching and caching."""
        started = time.perf_counter()
        records: list[dict] = []
        rounds = max((e.rounds for e in episodes), default=0)
        with tqdm(
            total=None, unit="turn", desc="rollout", disable=not self.progress, mininterval=1.0, dynamic_ncols=True
        ) as self._bar:
            for r in range(1, rounds + 1):
                live = [e for e in episodes if r <= e.rounds]
                per_episode = [e.turns(r) for e in live]
                if r == 1:
                    self._bar.total = sum(len(t) for t in per_episode) * rounds
                flat = [t for ts in per_episode for t in ts]
                for t in flat:
                    self.prompts.setdefault(t.prompt_sha, t.conversation)
                answers = iter(self.answer(flat))
                for episode, turns in zip(live, per_episode):
                    for rec in episode.record(r, [next(answers) for _ in turns]):
                        rec.update(policy=self.policy.id, decision=self.decision, sampling=self.sampling.to_dict())
                        records.append(rec)
        self._bar = None
        self.stats.wall_s = round(time.perf_counter() - started, 3)
        return records
