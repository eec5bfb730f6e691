"""Choice parsing: `paper` reproduces the upstream parser bit for bit, `robust` is the default.

paper  — first match anywhere in the response (inside <think> too), a JSON-object regex that a
         nested brace or single quotes defeat, then the testbed's fallback regex
         (upstream-protocol.md §2.3, §3.4). Kept for fidelity runs.
robust — the agent's *final* decision: reasoning inside <think>…</think> is dropped, the last
         `choice` key wins, quotes/fences/case/spacing/nesting are tolerated, multi-word labels
         are matched whole. Anything else is invalid (None), never a silent compliance.
"""

from __future__ import annotations

import re
from typing import Literal

from tipping.testbeds.base import Options

ParserMode = Literal["paper", "robust"]
PARSER_MODES = ("paper", "robust")

_PAPER_JSON = re.compile(r'\{[^}]*"choice"\s*:\s*"([^"]+)"[^}]*\}', re.IGNORECASE)
_PAPER_FALLBACK = {
    # single: lazy, so a multi-word label is cut at its first space (never matches in practice)
    "single": re.compile(r'"?choice"?\s*:\s*"?([^"\n\r]+?)"?(?:[\s,\}]|$)', re.IGNORECASE),
    # multi (and the upstream DPO/GRPO helpers): one word, up to whitespace/comma/quote
    "multi": re.compile(r'"?choice"?\s*:\s*"?([^",\s]+)"?', re.IGNORECASE),
}

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_CHOICE_KEY = re.compile(r"""["']?\bchoice\b["']?\s*[:=]\s*""", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def parse_choice(text: str, options: Options, mode: ParserMode = "robust", testbed: str = "single") -> str | None:
    """Return the chosen label (as spelled in `options`) or None when no decision can be read."""
    if mode == "paper":
        return _parse_paper(text, options, testbed)
    return _parse_robust(text, options)


def _match_label(value: str, options: Options) -> str | None:
    wanted = _normalise(value)
    for label in options.labels():
        if _normalise(label) == wanted:
            return label
    return None


def _normalise(value: str) -> str:
    value = _SPACES.sub(" ", value).strip().strip("\"'`").strip()
    return value.rstrip(".!;").strip().lower()


def _parse_paper(text: str, options: Options, testbed: str) -> str | None:
    found = _PAPER_JSON.search(text)
    if found:
        label = _match_label_exact(found.group(1), options)
        if label:
            return label
    found = _PAPER_FALLBACK[testbed].search(text)
    if found:
        return _match_label_exact(found.group(1), options)
    return None


def _match_label_exact(value: str, options: Options) -> str | None:
    # upstream: strip + lower, then exact equality — no other normalisation
    wanted = value.strip().lower()
    for label in options.labels():
        if label.lower() == wanted:
            return label
    return None


def final_answer_text(text: str) -> str:
    """The part of a response after its reasoning: closed <think> blocks removed; an unclosed
    <think> means the model never reached an answer; a lone </think> (some servers strip the
    opening tag) ends the reasoning."""
    text = _THINK_BLOCK.sub(" ", text)
    lowered = text.lower()
    if "</think>" in lowered:
        text = text[lowered.rindex("</think>") + len("</think>"):]
    lowered = text.lower()
    if "<think>" in lowered:
        text = text[: lowered.index("<think>")]
    return text.replace("```json", " ").replace("```JSON", " ").replace("```", " ")


def _parse_robust(text: str, options: Options) -> str | None:
    answer = final_answer_text(text)
    for key in reversed(list(_CHOICE_KEY.finditer(answer))):
        label = _match_label(_value_after(answer, key.end()), options)
        if label:
            return label
    # a bare label as the whole answer ("Route B") is a decision too
    return _match_label(answer, options)


def _value_after(text: str, start: int) -> str:
    """The value written after `choice:` — quoted (either quote) or bare up to , } or newline."""
    rest = text[start:].lstrip()
    if rest[:1] in ('"', "'"):
        end = rest.find(rest[0], 1)
        return rest[1:end] if end > 0 else rest[1:]
    return re.split(r"[,}\n\r]", rest, maxsplit=1)[0]
