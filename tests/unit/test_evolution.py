"""Scoring and filtering a round's experience: a common scale, rules, deterministic ties, pairs."""

from __future__ import annotations

import json

import pytest

from tipping.cli import main
from tipping.errors import InputError
from tipping.evolution import filter_run, score_run, select, turn_score
from tipping.outputs import read_jsonl, write_jsonl

PROMPTS = {
    "p1": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}],
    "p2": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q2"}],
}


def rec(episode, round, reward, deviant, valid=True, agent=0, prompt="p1", **extra) -> dict:
    choice = None if not valid else ("break" if deviant else "keep")
    return {
        "testbed": "single",
        "episode": episode,
        "item": episode,
        "scenario": "job",
        "round": round,
        "agent": agent,
        "reward": reward,
        "valid": valid,
        "deviant": deviant if valid else None,
        "choice": choice,
        "response": f"{episode}/{round}/{agent}",
        "prompt_sha": prompt,
        "violating_reward": 2.0,
        **extra,
    }


def scored(records):
    return [{**r, "score": turn_score(r)} for r in records]


RECORDS = [
    rec("b", 1, 2.0, True),
    rec("a", 2, 2.0, True),  # ties with b/1 and a/1: ordered by episode, then round
    rec("a", 1, 2.0, True),
    rec("c", 1, 1.0, False),
    rec("c", 2, 1.0, False),
    rec("d", 1, 0.0, True),  # violation caught: pays nothing
    rec("e", 1, 9.0, None, valid=False),  # unparseable: never kept, whatever its reward
]


def write_run(folder, records):
    write_jsonl(folder / "records.jsonl", records)
    write_jsonl(folder / "prompts.jsonl", [{"prompt_sha": k, "messages": v} for k, v in PROMPTS.items()])
    write_jsonl(folder / "scored.jsonl", score_run(folder))
    return folder / "scored.jsonl"


@pytest.fixture
def run(tmp_path):
    write_run(tmp_path, RECORDS)
    return tmp_path


def keys(records):
    return [(r["episode"], r["round"]) for r in records]


def test_top_fraction_keeps_the_best_valid_turns_with_deterministic_ties():
    rows = scored(RECORDS)
    assert keys(select(rows, "top_fraction", 0.5)) == [("a", 1), ("a", 2), ("b", 1)]  # ceil(0.5 * 6)
    assert keys(select(rows, "top_fraction", 0.3)) == [("a", 1), ("a", 2)]
    assert keys(select(list(reversed(rows)), "top_fraction", 0.3)) == [("a", 1), ("a", 2)]  # order-free
    assert ("e", 1) not in keys(select(rows, "top_fraction", 1.0))


def test_above_mean_and_threshold():
    # valid scores (reward / 2.0) 1, 1, 1, .5, .5, 0: mean .67
    rows = scored(RECORDS)
    assert keys(select(rows, "above_mean")) == [("a", 1), ("a", 2), ("b", 1)]
    assert keys(select(rows, "threshold", threshold=0.5)) == [("a", 1), ("a", 2), ("b", 1), ("c", 1), ("c", 2)]


def test_scores_share_one_scale_across_payoff_sizes():
    # an unpunished violation on a $2 job (score 1.0) outranks a compliant $6,000 on a $10,000 job
    # (score 0.6): ranked by raw reward, only the big jobs' turns would ever be kept
    small = rec("small", 1, 2.0, True, violating_reward=2.0)
    big = rec("big", 1, 6000.0, False, violating_reward=10000.0)
    assert keys(select(scored([small, big]), "top_fraction", 0.5)) == [("small", 1)]
    multi = {"testbed": "multi", "valid": True, "reward": -0.16, "capital_before": 0.8, "prompt_sha": "p"}
    assert turn_score(multi) == pytest.approx(-0.2)  # the round's return, not the capital-scaled delta
    assert turn_score({**multi, "valid": False}) is None


def test_confederates_are_not_the_agents_experience():
    records = [rec("m", 1, 5.0, True, agent=7, confederate=True, prompt=None), rec("m", 1, 1.0, False)]
    assert keys(select(scored(records), "top_fraction", 1.0)) == [("m", 1)]


def test_filter_writes_sft_rows_and_a_summary_of_the_enrichment(run):
    summary = filter_run(run / "scored.jsonl", run / "kept.jsonl", fraction=0.5)
    kept = read_jsonl(run / "kept.jsonl")
    assert next(r["messages"][-1] for r in kept) == {"role": "assistant", "content": "a/1/0"}
    assert kept[0]["messages"][:2] == PROMPTS["p1"] and kept[0]["reward"] == 2.0
    assert summary["kept"] == {"n": 3, "mean_reward": 2.0, "mean_score": 1.0, "deviant_share": 1.0}
    assert summary["valid"]["n"] == 6 and summary["valid"]["deviant_share"] == pytest.approx(4 / 6)
    assert json.loads((run / "kept.summary.json").read_text())["kept"]["n"] == 3


def test_reward_ranked_pairs_need_the_same_prompt_and_different_rewards(run):
    records = [
        rec("g", 1, 0.5, False, agent=0, prompt="p2"),
        rec("g", 1, 1.5, True, agent=1, prompt="p2"),
        rec("g", 1, 1.5, True, agent=2, prompt="p2"),
        rec("h", 1, 1.0, False, prompt="p1"),
    ]
    summary = filter_run(write_run(run, records), run / "kept.jsonl", pairs_out=run / "pairs.jsonl")
    (pair,) = read_jsonl(run / "pairs.jsonl")
    assert summary["pairs"]["n"] == 1
    assert pair["prompt"] == PROMPTS["p2"]
    assert (pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == ("g/1/1", "g/1/0")
    assert (pair["chosen_reward"], pair["rejected_reward"]) == (1.5, 0.5)


def another_runs_records(run):
    write_jsonl(run / "records.jsonl", [rec("a", 1, 1.0, False, prompt="unknown-sha")])
    score_run(run)


REFUSED = [  # (case, what is done to the run folder, error text)
    ("records-of-another-run", another_runs_records, "line 1: prompt_sha unknown-sha"),
    (
        "unscored-input",
        lambda run: filter_run(run / "records.jsonl", run / "kept.jsonl"),
        "line 1: no score/messages; give the output of `tipping evolve score`",
    ),
]


@pytest.mark.parametrize("call,message", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_bad_experience_is_refused(run, call, message):
    with pytest.raises(InputError, match=message):
        call(run)
    assert not (run / "kept.jsonl").exists()


def test_cli_filter(run, capsys):
    assert main(["evolve", "score", "--run", str(run), "--out", str(run / "scored2.jsonl")]) == 0
    assert "scored 6 of 7 turns" in capsys.readouterr().out
    assert (run / "scored2.jsonl").read_bytes() == (run / "scored.jsonl").read_bytes()
    argv = ["evolve", "filter", "--scored", str(run / "scored.jsonl"), "--out", str(run / "kept.jsonl")]
    assert main(argv + ["--rule", "threshold", "--threshold", "1"]) == 0
    assert "kept 3 of 6 valid turns (7 records); deviant share 100.0% kept vs 66.7% all" in capsys.readouterr().out


CLI_BAD = [  # (case, `evolve filter` options, the whole error output)
    ("threshold-without-score", ["--rule", "threshold"], "tipping: error: --rule threshold needs --threshold SCORE"),
    ("zero-fraction", ["--fraction", "0"], "tipping: error: --fraction must be in (0, 1], got 0.0"),
    ("fraction-above-one", ["--fraction", "1.5"], "tipping: error: --fraction must be in (0, 1], got 1.5"),
]


@pytest.mark.parametrize("options,expected", [case[1:] for case in CLI_BAD], ids=[case[0] for case in CLI_BAD])
def test_cli_filter_refuses_bad_options_in_one_line(run, capsys, options, expected):
    argv = ["evolve", "filter", "--scored", str(run / "scored.jsonl"), "--out", str(run / "kept.jsonl")]
    assert main(argv + options) == 2
    assert capsys.readouterr().err.strip() == expected
    assert not (run / "kept.jsonl").exists()
