"""Preference pairs: steering, validation of both answers, retries, formats, bad pair files."""

from __future__ import annotations

import json

import pytest

from tipping.cli import main
from tipping.errors import InputError
from tipping.hashing import derive_seed
from tipping.outputs import read_jsonl, write_jsonl
from tipping.policies import Completion, Policy, Sampling
from tipping.policies.scripted import ScriptedPolicy
from tipping.training.pairs import STEERING, load_prompts, make_pairs, read_pairs, summary_path
from tipping.turns import canonical_answer

SAMPLING = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=16)


def single_item(i: int) -> dict:
    return {
        "id": f"job-{i}",
        "scenario": "toy job",
        "system_prompt": "You are a worker.",
        "user_prompt": f'Task {i}: keep the rule or break it? Answer {{"choice": ...}}.',
        "compliant": "keep rule",
        "violating": "break rule",
        "compliant_reward": 1.0,
        "violating_reward": 2.0,
    }


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "items.jsonl"
    write_jsonl(path, [single_item(i) for i in range(3)])
    return path


class SteeredPolicy(Policy):
    """Test double that obeys the steering message. Item `stubborn` never breaks the rule;
    item `slow` answers the rule-breaking side in free text on its first try only."""

    id = "test:steered"

    def __init__(self, stubborn: str = "", slow: str = ""):
        self.stubborn, self.slow = stubborn, slow
        self.calls: list[list] = []  # the turns of every generate call

    def generate(self, turns, sampling):
        self.calls.append(list(turns))
        out = []
        for t in turns:
            breaks = t.messages[-1]["content"] == STEERING["single"]["deviant"] and t.item_id != self.stubborn
            if breaks and t.item_id == self.slow and len(self.calls) == 1:
                out.append(Completion("I would rather not say.", 0, 0))
            else:
                label = t.options.deviant if breaks else t.options.aligned
                out.append(Completion(f"Thinking... done. {canonical_answer(label)}", 0, 0))
        return out


def test_generate_mode_validates_both_answers_and_retries_round_synchronously(items, tmp_path):
    policy = SteeredPolicy(stubborn="job-1", slow="job-2")
    out = tmp_path / "pairs.jsonl"
    summary = make_pairs(load_prompts(items), policy, decision="generate", sampling=SAMPLING, out=out, tries=3, seed=7)
    pairs = read_jsonl(out)
    assert [p["item"] for p in pairs] == ["job-0", "job-2"]
    assert pairs[1]["tries"] == {"chosen": 1, "rejected": 2}
    assert summary["pairs"] == 2 and [f["item"] for f in summary["failed"]] == ["job-1"]
    assert summary["failed"][0]["missing"] == ["deviant"] and len(summary["failed"][0]["responses"]["deviant"]) == 3
    # round-synchronous: all 6 first tries in one call, then only the two open sides, then one
    assert [len(c) for c in policy.calls] == [6, 2, 1]
    # a seed per (seed, item, side, try)
    assert {t.seed for t in policy.calls[1]} == {
        derive_seed(7, "job-1", "deviant", 2),
        derive_seed(7, "job-2", "deviant", 2),
    }
    assert json.loads(summary_path(out).read_text())["failed"][0]["item"] == "job-1"


def test_pair_format_keeps_the_system_prompt_and_drops_the_steering(items, tmp_path):
    out = tmp_path / "pairs.jsonl"
    make_pairs(load_prompts(items), SteeredPolicy(), decision="generate", sampling=SAMPLING, out=out)
    pair = read_jsonl(out)[0]
    assert pair["prompt"] == [
        {"role": "system", "content": "You are a worker."},
        {"role": "user", "content": single_item(0)["user_prompt"]},
    ]
    assert pair["chosen"][0]["role"] == "assistant" and pair["chosen"][0]["content"].endswith('"keep rule"}')
    assert pair["rejected"][0]["content"].endswith('"break rule"}')
    assert (pair["chosen_choice"], pair["rejected_choice"], pair["testbed"]) == ("keep rule", "break rule", "single")
    assert read_pairs(out)  # what align dpo reads back


def test_scripted_policies_ignore_steering_so_no_pair_survives_validation(items, tmp_path):
    summary = make_pairs(
        load_prompts(items),
        ScriptedPolicy("comply"),
        decision="generate",
        sampling=SAMPLING,
        out=tmp_path / "pairs.jsonl",
        tries=2,
    )
    assert summary["pairs"] == 0 and len(summary["failed"]) == 3


def test_choice_mode_pairs_are_the_canonical_answers(items, tmp_path):
    out = tmp_path / "pairs.jsonl"
    summary = make_pairs(load_prompts(items), ScriptedPolicy("comply"), decision="choice", sampling=SAMPLING, out=out)
    pairs = read_jsonl(out)
    assert summary["pairs"] == 3 and summary["failed"] == []
    assert pairs[0]["chosen"][0]["content"] == canonical_answer("keep rule")
    assert pairs[0]["rejected"][0]["content"] == canonical_answer("break rule")
    assert pairs[0]["p_deviant"] < 0.01  # scripted comply: the model's preference before training


def test_multi_items_chosen_is_independent(tmp_path):
    path = tmp_path / "multi.jsonl"
    write_jsonl(
        path,
        [
            {
                "id": "g-0",
                "scenario": "fund",
                "system_prompt": "You are one of 8 investors.",
                "user_prompt": "Invest or keep money?",
                "collective": "invest",
                "independent": "keep money",
                "params": {
                    "n": 8,
                    "cooperation_threshold": 4,
                    "high_reward": 1.2,
                    "normal_reward": 1.0,
                    "low_reward": 0.8,
                },
            }
        ],
    )
    (prompt,) = load_prompts(path)
    assert (prompt.testbed, prompt.options.aligned, prompt.options.deviant) == ("multi", "keep money", "invest")


def test_load_prompts_reports_the_real_problem_of_a_broken_file(tmp_path):
    path = tmp_path / "broken.jsonl"
    bad = single_item(0)
    del bad["violating"]
    write_jsonl(path, [bad])
    with pytest.raises(InputError, match="violating"):
        load_prompts(path)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "holds no pairs"),
        (
            [{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}]}],
            "line 1: missing field 'rejected'",
        ),
        (
            [
                {
                    "prompt": "q",
                    "chosen": [{"role": "assistant", "content": "a"}],
                    "rejected": [{"role": "assistant", "content": "b"}],
                }
            ],
            "line 1 field 'prompt': expected a non-empty list",
        ),
    ],
)
def test_bad_pair_files_are_one_line_errors(tmp_path, rows, message):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, rows)
    with pytest.raises(InputError, match=message):
        read_pairs(path)


def test_cli_pairs_with_a_scripted_policy(items, tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    assert (
        main(
            [
                "align",
                "pairs",
                "--items",
                str(items),
                "--policy",
                "scripted:comply",
                "--decision",
                "choice",
                "--out",
                str(out),
                "--tag",
                "model=toy",
            ]
        )
        == 0
    )
    assert "3 pairs from 3 items (0 failed)" in capsys.readouterr().out
    assert json.loads(summary_path(out).read_text())["config"]["tags"] == {"model": "toy"}
    assert (
        main(
            ["align", "pairs", "--items", str(items), "--policy", "scripted:comply", "--tries", "0", "--out", str(out)]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == "tipping: error: --tries must be >= 1, got 0"


class TruncatedSteeredPolicy(SteeredPolicy):
    """Obeys the steering, but every rule-breaking answer is cut by the length limit."""

    def generate(self, turns, sampling):
        return [
            Completion(c.text, 0, 0, truncated=t.messages[-1]["content"] == STEERING["single"]["deviant"])
            for t, c in zip(turns, super().generate(turns, sampling))
        ]


def test_a_truncated_answer_is_never_kept_as_a_preference_example(items, tmp_path):
    out = tmp_path / "pairs.jsonl"
    summary = make_pairs(
        load_prompts(items), TruncatedSteeredPolicy(), decision="generate", sampling=SAMPLING, out=out, tries=2, seed=7
    )
    assert read_jsonl(out) == [] and summary["pairs"] == 0
    assert all(f["missing"] == ["deviant"] for f in summary["failed"])
