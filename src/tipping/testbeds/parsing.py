"""Choice parsing: `paper` reproduces the upstream parser bit for bit, `robust` is the default.

paper  — first match anywhere in the response (inside <think> too), a JSON-object regex that a
         nested brace or single quotes defeat, then the testbed's fallback regex
         (upstream-protocol.md §2.3, §3.4). Kept for fidelity runs.
robust — the agent's *final decision*, read from the answer after its reasoning (<think>…</think>
         dropped); quotes, fences, case, spacing and nesting are tolerated, multi-word labels are
         matched whole. Precisely:
         1. A decision statement is a `choice` key (`"choice":`, `choice:`, `'choice' =` ...) and
            its value: a quoted string, a [list], or bare text up to `,` `}` or the line end. It
            names a label when the value is that label; it names both when the value holds both
            ("A or B", "A/B", ["A", "B"]), or when, still inside its object and line, only
            connective text leads from the value to the other label (`"choice": "A" or "B"`).
            A statement that names no label is not a decision (e.g. a template `"<option>"`).
         2. The final decision is the last statement that names a label, together with the
            statements chained to it: those separated from it by connective text only
            (punctuation, brackets, digits, whitespace, line breaks and the words or / and /
            either / nor / vs / versus). An echo of the format line, `{"choice": "A"} or
            {"choice": "B"}`, or a list of both options is one chain.
         3. A final decision that names both labels is a hedge: invalid (None), never the option
            the prompt happens to list last. Words between two statements ("... on reflection
            {"choice": "B"}") end the chain: the later statement is a change of mind and wins.
            Prose after the final decision is commentary: restating one option changes nothing.
         4. With no decision statement at all, an answer that is exactly one label is that label.
         Anything else is invalid (None), never a silent compliance.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from tipping.turns import Options

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
_BARE_VALUE = re.compile(r"[^,}\n\r]*")
_REST_OF_OBJECT = re.compile(r"[^}\n\r]*")
_CONNECTIVE_WORDS = re.compile(r"\b(?:or|and|either|nor|vs|versus)\b", re.IGNORECASE)
_LETTER = re.compile(r"[^\W\d_]")


def parse_choice(text: str, options: Options, mode: ParserMode = "robust", testbed: str = "single") -> str | None:
    """Return the chosen label (as spelled in `options`) or None when no decision can be read."""
    if mode == "paper":
        return _parse_paper(text, options, testbed)
    return _parse_robust(text, options)


def answer_choice(answer, options: Options, mode: ParserMode = "robust", testbed: str = "single") -> str | None:
    """The choice of a rollout Answer: None for a truncated one (cut by max_new_tokens or the
    context), whose final decision may be missing: a prefix is never read as a decision."""
    return None if answer.truncated else parse_choice(answer.text, options, mode, testbed)


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
        text = text[lowered.rindex("</think>") + len("</think>") :]
    lowered = text.lower()
    if "<think>" in lowered:
        text = text[: lowered.index("<think>")]
    return text.replace("```json", " ").replace("```JSON", " ").replace("```", " ")


def _parse_robust(text: str, options: Options) -> str | None:
    answer = final_answer_text(text)
    statements = [s for s in (_statement(answer, key, options) for key in _CHOICE_KEY.finditer(answer)) if s.labels]
    if not statements:
        # a bare label as the whole answer ("Route B") is a decision too
        return _match_label(answer, options)
    final = statements[-1]
    named, start = set(final.labels), final.start
    for earlier in reversed(statements[:-1]):  # walk back along the chain (rule 2)
        if not _connective(answer[earlier.end : start]):
            break
        named |= earlier.labels
        start = earlier.start
    return named.pop() if len(named) == 1 else None  # both labels: a hedge (rule 3)


class _Statement(NamedTuple):
    labels: frozenset[str]  # the labels it names: none, one, or both (a hedge)
    start: int  # where its key starts
    end: int  # where its value ends


def _statement(text: str, key: re.Match, options: Options) -> _Statement:
    value, end = _value_after(text, key.end())
    label = _match_label(value, options)
    named = {label} if label else _both_labels_in(value, options)
    if label:  # a second option right after the value, inside its object and line: "A" or "B"
        tail = text[end : _end_of_match(_REST_OF_OBJECT, text, end)]
        named |= {
            other
            for other in options.labels()
            if (found := _label_pattern(other).search(tail)) and _connective(tail[: found.start()])
        }
    return _Statement(frozenset(named), key.start(), end)


def _value_after(text: str, start: int) -> tuple[str, int]:
    """The value written after `choice:` (the key's match ends past the spaces) and where it ends:
    quoted (either quote), a [list], or bare up to , } or newline."""
    opener = text[start : start + 1]
    if opener in ('"', "'", "["):
        close = text.find("]" if opener == "[" else opener, start + 1)
        end = close if close > 0 else len(text)
        return text[start + 1 : end], min(end + 1, len(text))
    end = _end_of_match(_BARE_VALUE, text, start)
    return text[start:end], end


def _end_of_match(pattern: re.Pattern, text: str, start: int) -> int:
    """Where `pattern` (one that matches the empty string too, so always) stops matching from start."""
    found = pattern.match(text, start)
    assert found is not None
    return found.end()


def _both_labels_in(value: str, options: Options) -> set[str]:
    """Both labels when the value holds both as whole phrases, else none (one label among other
    words is no decision). The longer label is found and blanked first, so a label inside the
    other ("invest" in "don't invest") is not counted as a second option."""
    found = set()
    for label in sorted(options.labels(), key=len, reverse=True):
        pattern = _label_pattern(label)
        if pattern.search(value):
            found.add(label)
            value = pattern.sub(" ", value)
    return found if len(found) == 2 else set()


def _label_pattern(label: str) -> re.Pattern:
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, label.split())) + r"(?!\w)", re.IGNORECASE)


def _connective(text: str) -> bool:
    """Only punctuation, brackets, digits, whitespace and or/and/either/nor/vs/versus."""
    return not _LETTER.search(_CONNECTIVE_WORDS.sub(" ", text))
