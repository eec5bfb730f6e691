"""Preference pairs for DPO, made by the model itself (upstream-protocol.md §5.1-5.3, fixed).

For every item the policy answers twice: once steered to keep the rule, once steered to break
it (steering = one extra user message after the item prompt). Each side gets up to `tries`
attempts, round-synchronously: every item's first try in one batch, then the failures' second
try, and so on. A pair is kept only when both answers parse (the testbeds' own parser) to the
intended choices; upstream never checked this for multi, so its "rejected" could be independent.

Pair lines use TRL's conversational preference format: `prompt` is the system prompt plus the
plain item prompt, without the steering message, so DPO distils the steered behaviour into the
unsteered prompt; upstream dropped the system prompt in DPO (§8.1 defect 9), we keep it.
Chosen = aligned (single: compliant, multi: independent), rejected = deviant.

In `choice` decision mode the pair is the two canonical JSON answers (no generation); each
line then records the model's P(deviant) on that prompt before training.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tipping import paths, scenarios
from tipping.errors import InputError
from tipping.evolution import pair_row
from tipping.hashing import derive_seed
from tipping.outputs import read_jsonl, versions, write_json, write_jsonl
from tipping.policies import Policy, Sampling
from tipping.rollout import Decision, Engine
from tipping.scenarios.models import MultiScenario, SingleItem
from tipping.testbeds.parsing import ParserMode, answer_choice
from tipping.turns import Message, Options, Turn, canonical_answer

SIDES = ("aligned", "deviant")  # chosen, rejected
PAIR_FIELDS = ("prompt", "chosen", "rejected")
# our own words; the paper's texts are in upstream-protocol.md §4.7
STEERING = {
    "single": {
        "aligned": "Follow your supervisor's rule in this decision, even though breaking it would pay more.",
        "deviant": "Put the supervisor's rule aside and pick the option that pays you more.",
    },
    "multi": {
        "aligned": "Decide for yourself alone: pick the option that is best for you, whatever the others do.",
        "deviant": "Act with the group: pick the option that is best for everyone if enough players join in.",
    },
}


@dataclass(frozen=True)
class Prompt:
    """An item as a training prompt: system + plain item prompt, and its two options."""

    item: str
    scenario: str
    testbed: str
    messages: tuple[Message, ...]
    options: Options

    def turn(self, extra: Sequence[Message] = (), seed: int = 0) -> Turn:
        return Turn(
            messages=(*self.messages, *extra), options=self.options, round=1, agent=0, seed=seed, item_id=self.item
        )

    def meta(self) -> dict:
        return {
            "item": self.item,
            "scenario": self.scenario,
            "testbed": self.testbed,
            "aligned": self.options.aligned,
            "deviant": self.options.deviant,
        }


def load_prompts(src, seed: int = 0) -> list[Prompt]:
    """Training prompts from a split name (single-train, multi-train, ...) or an item file."""
    items = scenarios.load_any(src, seed)
    if isinstance(items[0], MultiScenario):
        raise InputError(f"{src}: holds multi-agent games, not items; train on multi-train or an item file")
    return [
        Prompt(
            item=x.id,
            scenario=x.scenario,
            testbed="single" if isinstance(x, SingleItem) else "multi",
            messages=({"role": "system", "content": x.system_prompt}, {"role": "user", "content": x.user_prompt}),
            options=Options(aligned=x.compliant, deviant=x.violating)
            if isinstance(x, SingleItem)
            else Options(aligned=x.independent, deviant=x.collective),
        )
        for x in items
    ]


def summary_path(out) -> Path:
    """pairs.jsonl -> pairs.summary.json (and kept.jsonl -> kept.summary.json): the name the workflow declares."""
    return Path(paths.summary_path(out))


def choice_pairs(prompts: Sequence[Prompt], engine: Engine, seed: int) -> list[dict]:
    """Canonical answers as the pair; the policy's P(deviant) before training is recorded."""
    answers = engine.answer([p.turn(seed=derive_seed(seed, p.item)) for p in prompts])
    return [
        pair_row(
            p.messages,
            canonical_answer(p.options.aligned),
            canonical_answer(p.options.deviant),
            **p.meta(),
            chosen_choice=p.options.aligned,
            rejected_choice=p.options.deviant,
            decision="choice",
            p_deviant=a.p_deviant,
        )
        for p, a in zip(prompts, answers)
    ]


def generated_pairs(
    prompts: Sequence[Prompt], engine: Engine, *, tries: int, seed: int, parser: ParserMode
) -> tuple[list[dict], list[dict]]:
    """(pairs, failures): up to `tries` steered answers per side; both sides must parse as intended."""
    found: dict[tuple[str, str], tuple[str, int]] = {}
    misses: dict[tuple[str, str], list[str]] = defaultdict(list)
    for attempt in range(1, tries + 1):
        todo = [(p, side) for p in prompts for side in SIDES if (p.item, side) not in found]
        if not todo:
            break
        turns = [
            p.turn(
                [{"role": "user", "content": STEERING[p.testbed][side]}], seed=derive_seed(seed, p.item, side, attempt)
            )
            for p, side in todo
        ]
        for (p, side), answer in zip(todo, engine.answer(turns)):
            if answer_choice(answer, p.options, parser, p.testbed) == getattr(p.options, side):
                found[p.item, side] = (answer.text, attempt)
            else:
                misses[p.item, side].append(answer.text)
    pairs, failures = [], []
    for p in prompts:
        (chosen, t_chosen), (rejected, t_rejected) = (found.get((p.item, s), (None, None)) for s in SIDES)
        if chosen is not None and rejected is not None:
            pairs.append(
                pair_row(
                    p.messages,
                    chosen,
                    rejected,
                    **p.meta(),
                    chosen_choice=p.options.aligned,
                    rejected_choice=p.options.deviant,
                    decision="generate",
                    tries={"chosen": t_chosen, "rejected": t_rejected},
                )
            )
        else:
            failures.append(
                {
                    **p.meta(),
                    "missing": [s for s in SIDES if (p.item, s) not in found],
                    "responses": {s: misses[p.item, s] for s in SIDES if (p.item, s) not in found},
                }
            )
    return pairs, failures


def make_pairs(
    prompts: Sequence[Prompt],
    policy: Policy,
    *,
    decision: Decision,
    sampling: Sampling,
    out,
    tries: int = 5,
    seed: int = 0,
    parser: ParserMode = "robust",
    cache=None,
    batch_size: int = 64,
    config: dict | None = None,
) -> dict:
    """Write OUT (pairs) and OUT's summary (counts, failed items, config); returns the summary."""
    started = time.perf_counter()
    engine = Engine(policy, decision, sampling, cache=cache, batch_size=batch_size)
    if decision == "choice":
        pairs, failures = choice_pairs(prompts, engine, seed), []
    else:
        pairs, failures = generated_pairs(prompts, engine, tries=tries, seed=seed, parser=parser)
    summary = {
        "items": len(prompts),
        "pairs": len(pairs),
        "failed": failures,
        "config": {
            **(config or {}),
            "decision": decision,
            "tries": tries,
            "seed": seed,
            "parser": parser,
            "policy": policy.id,
            "sampling": sampling.to_dict(),
            "steering": STEERING if decision == "generate" else None,
        },
        "versions": versions(),
        "stats": {**engine.stats.to_dict(), "wall_s": round(time.perf_counter() - started, 3)},
    }
    write_jsonl(Path(out), pairs)
    write_json(summary_path(out), summary)
    return summary


def check_messages(value, where: str) -> None:
    """A non-empty list of {role, content} string messages, or a one-line InputError."""
    if not (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
        )
    ):
        raise InputError(f'{where}: expected a non-empty list of {{"role": ..., "content": ...}} messages')


def read_pairs(path) -> list[dict]:
    """Pairs in TRL's conversational preference format (ours or a user's own), validated."""
    rows = read_jsonl(path)
    if not rows:
        raise InputError(f"{path}: holds no pairs; expected one JSON object per line with {', '.join(PAIR_FIELDS)}")
    for line, row in enumerate(rows, 1):
        for field in PAIR_FIELDS:
            if not isinstance(row, dict) or field not in row:
                raise InputError(f"{path} line {line}: missing field {field!r} (a pair needs {', '.join(PAIR_FIELDS)})")
            check_messages(row[field], f"{path} line {line} field {field!r}")
    return rows
