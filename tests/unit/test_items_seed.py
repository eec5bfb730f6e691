"""The items seed draws the splits, the sampling seed only samples; multi items play their own game."""

import json

import pytest

from tipping.cli import main
from tipping.evolution import score_run
from tipping.scenarios import load_multi_items, write_items
from tipping.scenarios.generator import make_split
from tipping.scenarios.models import GameParams


@pytest.mark.parametrize("test, train", [("single-test", "single-train"), ("multi-eval", "multi-train")])
@pytest.mark.parametrize("items_seed", [0, 1, 2, 7])
def test_a_train_split_never_shares_a_prompt_with_its_test_split(test, train, items_seed):
    held_out = {it.user_prompt for it in make_split(test, items_seed)}
    trained = {it.user_prompt for it in make_split(train, items_seed)}
    assert held_out and trained and not held_out & trained


def _round_one(out):
    """(item id, first-round question) of every episode a run played."""
    prompts = {row["prompt_sha"]: row["messages"] for row in map(json.loads, (out / "prompts.jsonl").open())}
    return sorted(
        {
            (r["item"], prompts[r["prompt_sha"]][-1]["content"])
            for r in map(json.loads, (out / "records.jsonl").open())
            if r["round"] == 1
        }
    )


def _run_single(tmp_path, name, *flags):
    out = tmp_path / name
    assert (
        main(
            [
                "run",
                "single",
                "--items",
                "single-test",
                "--limit",
                "6",
                "--rounds",
                "1",
                "--policy",
                "scripted:violate",
                "--no-progress",
                "--out",
                str(out),
                *flags,
            ]
        )
        == 0
    )
    return out


def test_the_sampling_seed_does_not_change_the_items(tmp_path):
    base = _run_single(tmp_path, "a", "--seed", "0")
    other_seed = _run_single(tmp_path, "b", "--seed", "5")
    other_items = _run_single(tmp_path, "c", "--seed", "0", "--items-seed", "5")
    assert _round_one(base) == _round_one(other_seed)  # same ids, same prompts
    turn_seeds = [[json.loads(line)["seed"] for line in (o / "records.jsonl").open()] for o in (base, other_seed)]
    assert turn_seeds[0] != turn_seeds[1]  # ... but sampled with the other seed
    assert [q for _, q in _round_one(base)] != [q for _, q in _round_one(other_items)]
    config = json.loads((other_items / "run.json").read_text())["config"]
    assert (config["items_seed"], config["seed"]) == (5, 0)


def _item(n, threshold, rewards):
    item = load_multi_items("multi-train")[0]
    return item.model_copy(
        update={
            "params": GameParams(
                n=n,
                cooperation_threshold=threshold,
                high_reward=rewards[0],
                normal_reward=rewards[1],
                low_reward=rewards[2],
            )
        }
    )


@pytest.mark.parametrize("colluders, success", [(3, True), (2, False)])
def test_a_multi_item_is_played_as_its_own_game(tmp_path, colluders, success):
    """n agents, the item's threshold and factors; the agents are asked the item's own prompt."""
    item = _item(5, 3, (1.5, 0.9, 0.4))
    write_items([item], tmp_path / "items.jsonl")
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "multi",
                "--scenarios",
                str(tmp_path / "items.jsonl"),
                "--rounds",
                "2",
                "--policy",
                f"scripted:collude:{colluders}",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in (out / "records.jsonl").open()]
    assert len(records) == 5 * 2 and {r["agent"] for r in records} == set(range(5))
    assert {(r["item"], r["threshold"], tuple(r["rewards"])) for r in records} == {(item.id, 3, (1.5, 0.9, 0.4))}
    first = [r for r in records if r["round"] == 1]
    assert all(r["success"] is success and r["collective_count"] == colluders for r in first)
    expected = {True: 1.5, False: 1.5} if success else {True: 0.4, False: 0.9}  # success pays everyone
    assert all(r["capital"] == pytest.approx(expected[r["deviant"]]) for r in first)
    prompts = {row["prompt_sha"]: row["messages"] for row in map(json.loads, (out / "prompts.jsonl").open())}
    asked = prompts[first[0]["prompt_sha"]]
    assert asked[0]["content"].startswith(item.system_prompt)
    assert asked[-1]["content"] == "This is a new round.\n" + item.user_prompt
    second = prompts[next(r["prompt_sha"] for r in records if r["round"] == 2)]
    assert f"Collective choices: {colluders}/5 " in json.dumps(second)
    # evolve score reads such a rollout: every turn on the round-return scale
    scored = score_run(out)
    assert all(s["score"] == pytest.approx(s["reward"] / s["capital_before"]) for s in scored)


def test_grid_flags_are_refused_for_items(tmp_path, capsys):
    code = main(
        [
            "run",
            "multi",
            "--scenarios",
            "multi-train",
            "--thresholds",
            "2",
            "--policy",
            "scripted:comply",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--thresholds" in err and "own n, threshold" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
