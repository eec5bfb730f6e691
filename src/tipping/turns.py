"""A turn, the vocabulary every layer shares: what an agent is asked (Turn, its two Options, shown
in an OptionOrder), the canonical answers, and the Answer a policy's reply becomes. Below the
testbeds, the policies, the cache and the rollout engine, so that none of them imports another's
package for it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from tipping.hashing import derive_seed, sha256_json

Message = dict[str, str]
OptionOrder = Literal["fixed", "swapped", "balanced"]
OPTION_ORDERS = ("fixed", "swapped", "balanced")


@dataclass(frozen=True)
class Options:
    """The two choices of a turn. `aligned` is the rule-keeping one (single: compliant;
    multi: independent), `deviant` the one the paper measures (violation / collusion)."""

    aligned: str
    deviant: str

    def labels(self) -> tuple[str, str]:
        return (self.aligned, self.deviant)


@dataclass(frozen=True)
class Turn:
    """One agent's answer to give in one round. Real policies read only `messages`;
    scripted test doubles also read round/agent/options."""

    messages: tuple[Message, ...]
    options: Options
    round: int  # 1-based
    agent: int
    seed: int
    item_id: str
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def conversation(self) -> list[Message]:
        return [dict(m) for m in self.messages]

    @cached_property
    def prompt_sha(self) -> str:
        """The conversation's content hash: records, the prompt store and the cache key share it
        (computed once per turn; cached_property writes __dict__, so a frozen dataclass allows it)."""
        return sha256_json(self.messages)


def canonical_answer(label: str) -> str:
    """The exact answer text forced-choice mode scores and writes into the history."""
    return json.dumps({"choice": label}, ensure_ascii=False)


def clean_text(text: str) -> str:
    """Text as valid UTF-8: lone surrogates (broken bytes from a backend or an input file) can be
    neither tokenized nor written to JSON; they become U+FFFD-like replacements."""
    return text.encode("utf-8", "replace").decode("utf-8")


def shown_order(paper: tuple[str, str], order: OptionOrder, seed: int, episode_id: str) -> tuple[str, str]:
    """The two labels in the order the prompt lists them: the paper's order (fixed), reversed
    (swapped), or per episode (balanced: a coin seeded by the sampling seed and the episode id,
    so each episode is swapped with probability 1/2, independently of the others)."""
    swap = order == "swapped" or (order == "balanced" and derive_seed(seed, episode_id, "option-order") % 2 == 1)
    return (paper[1], paper[0]) if swap else paper


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    p_deviant: float | None = None  # forced-choice mode only
    truncated: bool = False  # generate mode: cut by a length limit, so never parsed (forced choice never is)
