"""Deterministic test doubles. They answer in the JSON format the testbeds ask for.

scripted:comply        always the aligned option
scripted:violate       always the deviant option
scripted:flip@K        aligned before round K, deviant from round K on (1-based)
scripted:collude:K     multi: agents 0..K-1 choose the collective option, the rest not
scripted:first         the option the prompt lists first (a pure position bias)
scripted:imitate@THETA multi/population: round 1 the aligned (independent) option; from round 2 the
                       deviant (collective) one iff at least a fraction THETA of the agent's
                       neighbours chose it last round (confederates count; no neighbours: aligned)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from tipping.errors import InputError
from tipping.policies.base import ChoiceScores, Completion, Policy, Sampling
from tipping.turns import Turn, canonical_answer

_SPECS = {
    "comply": re.compile(r"comply$"),
    "violate": re.compile(r"violate$"),
    "flip": re.compile(r"flip@(\d+)$"),
    "collude": re.compile(r"collude:(\d+)$"),
    "first": re.compile(r"first$"),
    "imitate": re.compile(r"imitate@(\d+(?:\.\d*)?|\.\d+)$"),
}


class ScriptedPolicy(Policy):
    def __init__(self, rule: str):
        for kind, pattern in _SPECS.items():
            found = pattern.match(rule)
            if found:
                # THETA exact (Fraction): 3 of 10 neighbours meet imitate@0.3
                number = (Fraction if kind == "imitate" else int)(found.group(1)) if found.groups() else 0
                self.kind, self.k = kind, number
                self.id = f"scripted:{rule}"
                if kind == "imitate" and not 0 <= self.k <= 1:
                    raise InputError(f"--policy scripted:{rule}: THETA must be a fraction in [0, 1]")
                return
        raise InputError(
            f"--policy scripted:{rule}: unknown script; expected one of "
            "scripted:comply, scripted:violate, scripted:flip@K, scripted:collude:K, scripted:first, "
            "scripted:imitate@THETA"
        )

    def deviates(self, turn: Turn) -> bool:
        if self.kind == "first":
            return listed_first(turn) == turn.options.deviant
        if self.kind == "imitate":
            return imitates(turn.meta.get("peers"), self.k)
        return {"comply": False, "violate": True, "flip": turn.round >= self.k, "collude": turn.agent < self.k}[
            self.kind
        ]

    def generate(self, turns: Sequence[Turn], sampling: Sampling) -> list[Completion]:
        return [
            Completion(canonical_answer(t.options.deviant if self.deviates(t) else t.options.aligned), 0, 0)
            for t in turns
        ]

    def score_choices(self, turns: Sequence[Turn], sampling: Sampling) -> list[ChoiceScores]:
        # log-probabilities of a (near-)certain decision
        return [
            ChoiceScores(aligned=-30.0, deviant=0.0, prompt_tokens=0)
            if self.deviates(t)
            else ChoiceScores(aligned=0.0, deviant=-30.0, prompt_tokens=0)
            for t in turns
        ]


def listed_first(turn: Turn) -> str:
    """The option whose JSON answer comes first in the instructions (system prompt, then the
    question): read from the prompt, as a position-biased model would, not from the records."""
    text = f"{turn.messages[0]['content']}\n{turn.messages[-1]['content']}"
    found = {text.find(canonical_answer(label)): label for label in turn.options.labels()}
    found.pop(-1, None)
    if not found:
        raise InputError(f"--policy scripted:first: the prompt of {turn.item_id} lists no JSON answer")
    return found[min(found)]


def imitates(peers: list | None, theta: Fraction) -> bool:
    """The threshold rule: at least theta of the neighbours' last choices were collective (True).
    None (round 1) and no neighbours give False."""
    return bool(peers) and sum(p is True for p in peers) >= theta * len(peers)
