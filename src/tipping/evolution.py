"""Score and filter a round's experience: the weight-level self-evolution step.

score   every turn of a rollout gets a `score`, its reward on a common scale, so that one
        ranking can run across items whose payoffs differ by orders of magnitude ($2 vs
        $10,000 jobs): single = reward / the item's violating payoff (the best a turn can earn;
        1.0 = an unpunished violation); multi = reward / capital before the round (the round's
        return). Invalid answers and confederates' scripted turns get no score.
filter  the agent keeps its best-scored turns and is fine-tuned on them (tipping.training.sft).
        If breaking the rule pays more, the kept data is enriched in violations: the summary
        reports the deviant share among kept turns against all scored turns, which is the
        mechanism under study.

Rules (a turn without a score is never kept):
    top_fraction  the best `fraction` of the scored turns (ceil)
    above_mean    score strictly above the mean score
    threshold     score >= `threshold`
Ties are broken deterministically: a stable sort by (-score, episode, round, agent).

`pairs_out` additionally writes reward-ranked DPO pairs: for every prompt answered more than
once with different scores (e.g. the agents of a multi round), the best answer is chosen and
the worst rejected.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from tipping import paths
from tipping.errors import InputError
from tipping.outputs import read_jsonl, write_json, write_jsonl
from tipping.paths import PROMPTS_JSONL, RECORDS_JSONL
from tipping.records import RunFolder

RULES = ("top_fraction", "above_mean", "threshold")
META = (
    "testbed",
    "episode",
    "item",
    "scenario",
    "round",
    "agent",
    "reward",
    "score",
    "choice",
    "deviant",
    "prompt_sha",
)


def pair_row(prompt, chosen: str, rejected: str, **meta) -> dict:
    """A DPO pair in TRL's conversational format (the ranked pairs here, the steered ones of tipping.training.pairs)."""
    return {
        "prompt": [dict(m) for m in prompt],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        **meta,
    }


def turn_score(record: dict) -> float | None:
    if not record["valid"] or record.get("confederate") or not record.get("prompt_sha"):
        return None
    scale = record["violating_reward"] if record["testbed"] == "single" else record["capital_before"]
    return record["reward"] / scale if scale else 0.0


def score_run(run) -> list[dict]:
    """The run's records with `score` and the conversation each turn answered (`messages`)."""
    folder = RunFolder(run, (RECORDS_JSONL, PROMPTS_JSONL))
    prompts = folder.prompts
    scored = []
    for line, r in enumerate(folder.records, 1):
        if r.get("prompt_sha") and r["prompt_sha"] not in prompts:
            raise InputError(
                f"{folder.path / RECORDS_JSONL} line {line}: prompt_sha {r['prompt_sha'][:12]}... is not "
                f"in {folder.path / PROMPTS_JSONL}; the run folder is incomplete or mixed"
            )
        scored.append({**r, "score": turn_score(r), "messages": prompts.get(r.get("prompt_sha"))})
    return scored


def rank(row: dict) -> tuple:
    return (-row["score"], str(row["episode"]), row["round"], row["agent"])


def eligible(rows: list[dict]) -> list[dict]:
    """The policy's own scored turns, best first."""
    return sorted((r for r in rows if r.get("score") is not None), key=rank)


def select(rows: list[dict], rule: str, fraction: float = 0.5, threshold: float | None = None) -> list[dict]:
    valid = eligible(rows)
    if rule == "top_fraction":
        return valid[: math.ceil(fraction * len(valid))]
    if rule == "above_mean":
        mean = sum(r["score"] for r in valid) / len(valid) if valid else 0.0
        return [r for r in valid if r["score"] > mean]
    return [r for r in valid if r["score"] >= threshold]


def ranked_pairs(rows: list[dict]) -> list[dict]:
    by_prompt = defaultdict(list)
    for r in eligible(rows):  # best first within each prompt, too
        by_prompt[r["prompt_sha"]].append(r)
    pairs = []
    for sha, group in by_prompt.items():
        best, worst = group[0], group[-1]
        if best["score"] > worst["score"]:
            pairs.append(
                pair_row(
                    best["messages"],
                    best["response"],
                    worst["response"],
                    item=best["item"],
                    scenario=best["scenario"],
                    testbed=best["testbed"],
                    prompt_sha=sha,
                    chosen_choice=best["choice"],
                    rejected_choice=worst["choice"],
                    chosen_reward=best["reward"],
                    rejected_reward=worst["reward"],
                )
            )
    return pairs


def _stats(rows: list[dict]) -> dict:
    n = len(rows)
    return {
        "n": n,
        "mean_reward": sum(r["reward"] for r in rows) / n if n else None,
        "mean_score": sum(r["score"] for r in rows) / n if n else None,
        "deviant_share": sum(bool(r["deviant"]) for r in rows) / n if n else None,
    }


def filter_run(
    scored, out, *, rule: str = "top_fraction", fraction: float = 0.5, threshold: float | None = None, pairs_out=None
) -> dict:
    """Write the kept turns as SFT rows ({"messages": prompt + [answer], ...metadata}) to OUT and
    a summary next to it; returns the summary."""
    if rule not in RULES:
        raise InputError(f"--rule {rule!r}: expected one of {', '.join(RULES)}")
    if rule == "top_fraction" and not 0 < fraction <= 1:
        raise InputError(f"--fraction must be in (0, 1], got {fraction}")
    if rule == "threshold" and threshold is None:
        raise InputError("--rule threshold needs --threshold SCORE")
    rows = read_jsonl(scored)
    for line, r in enumerate(rows, 1):
        if "score" not in r or "messages" not in r:
            raise InputError(f"{scored} line {line}: no score/messages; give the output of `tipping evolve score`")
    kept = select(rows, rule, fraction, threshold)
    write_jsonl(
        Path(out),
        [
            {
                "messages": r["messages"] + [{"role": "assistant", "content": r["response"]}],
                **{k: r.get(k) for k in META},
            }
            for r in kept
        ],
    )
    summary = {
        "rule": rule,
        "fraction": fraction if rule == "top_fraction" else None,
        "threshold": threshold,
        "records": len(rows),
        "valid": _stats(eligible(rows)),
        "kept": _stats(kept),
        "source": str(scored),
    }
    if pairs_out:
        pairs = ranked_pairs(rows)
        write_jsonl(Path(pairs_out), pairs)
        summary["pairs"] = {"n": len(pairs), "path": str(pairs_out)}
    write_json(Path(paths.summary_path(out)), summary)
    return summary
