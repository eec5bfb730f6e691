"""The round-synchronous engine: batching, the response cache, forced choice, garbage answers."""

import json
import warnings

import pytest

from tipping.cache import ResponseCache
from tipping.policies.base import ChoiceScores, Completion, Policy, Sampling
from tipping.rollout import Engine, choice_probability, sample_deviant
from tipping.runs import execute, multi_episodes, single_episodes
from tipping.scenarios import load_multi_games, load_single_items
from tipping.testbeds.multi import MultiSettings
from tipping.testbeds.single import SingleSettings


class Recorder(Policy):
    """Answers with a fixed text and remembers every backend call."""

    id = "recorder"

    def __init__(self, text='{"choice": "x"}'):
        self.text, self.calls = text, []

    def generate(self, turns, sampling):
        self.calls.append([(t.item_id, t.round, t.agent) for t in turns])
        return [Completion(self.text, 10, 3) for _ in turns]

    def score_choices(self, turns, sampling):
        self.calls.append(len(turns))
        return [ChoiceScores(aligned=-1.0, deviant=-1.0 + (t.round - 1), prompt_tokens=10) for t in turns]


def single(n=4, rounds=3):
    return single_episodes(load_single_items("single-test")[:n], SingleSettings(rounds=rounds), seed=0)


def test_one_backend_call_per_round_for_all_episodes():
    policy = Recorder()
    Engine(policy, "generate", Sampling(), progress=False).run(single(4, 3))
    assert len(policy.calls) == 3
    assert all(len(batch) == 4 for batch in policy.calls)
    assert {r for batch in policy.calls[1] for (_, r, _) in [batch]} == {2}


def test_multi_round_batches_all_agents_of_all_episodes():
    games = load_multi_games("multi-games")[:2]
    episodes = multi_episodes(games, [2, 4], [(1.2, 1.0, 0.8)], MultiSettings(agents=8, rounds=2), seed=0)
    policy = Recorder()
    records = Engine(policy, "generate", Sampling(), progress=False).run(episodes)
    assert [len(b) for b in policy.calls] == [2 * 2 * 8] * 2
    assert len(records) == 2 * 2 * 8 * 2


def test_batch_size_chunks_a_round():
    policy = Recorder()
    Engine(policy, "generate", Sampling(), batch_size=3, progress=False).run(single(4, 1))
    assert [len(b) for b in policy.calls] == [3, 1]


def test_cache_makes_reruns_free_and_recovers_from_corrupt_entries(tmp_path):
    cache = ResponseCache(tmp_path)
    first = Engine(Recorder(), "generate", Sampling(), cache=cache, progress=False)
    records = first.run(single(2, 2))
    assert first.stats.model_calls == 4
    again = Engine(Recorder(), "generate", Sampling(), cache=cache, progress=False)
    assert again.run(single(2, 2)) == records and again.stats.model_calls == 0 and again.stats.cache_hits == 4
    entries = sorted(tmp_path.rglob("*.json"))
    entries[0].write_text('{"key": "trunc')  # a torn write from some other tool
    entries[1].write_text(json.dumps({"key": "wrong", "value": {}}))
    third = Engine(Recorder(), "generate", Sampling(), cache=cache, progress=False)
    with pytest.warns(UserWarning, match="corrupt cache entry"):
        assert third.run(single(2, 2)) == records
    assert third.stats.model_calls == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: no more warnings
        Engine(Recorder(), "generate", Sampling(), cache=cache, progress=False).run(single(2, 2))


def test_cache_key_covers_sampling_and_policy(tmp_path):
    cache = ResponseCache(tmp_path)
    Engine(Recorder(), "generate", Sampling(), cache=cache, progress=False).run(single(1, 1))
    hot = Engine(Recorder(), "generate", Sampling(temperature=0.0), cache=cache, progress=False)
    hot.run(single(1, 1))
    assert hot.stats.model_calls == 1
    other = Recorder()
    other.id = "another-model"
    e = Engine(other, "generate", Sampling(), cache=cache, progress=False)
    e.run(single(1, 1))
    assert e.stats.model_calls == 1


@pytest.mark.parametrize("text", ["", "x" * 200_000, "caf\ufffd \udcff broken", "\x00\x01"])
def test_garbage_answers_become_invalid_records_not_crashes(text):
    records = Engine(Recorder(text), "generate", Sampling(), progress=False).run(single(1, 2))
    assert [r["valid"] for r in records] == [False, False]
    assert all(r["reward"] == 0.0 for r in records)


def test_choice_probability_and_sampling():
    assert choice_probability(-1.0, -1.0, 1.0) == 0.5
    assert choice_probability(-2.0, -1.0, 0.0) == 1.0
    assert choice_probability(-1.0, -1.0, 0.0) == 0.0  # ties go to the aligned option
    assert choice_probability(0.0, -2000.0, 0.5) == 0.0
    assert sample_deviant(0.3, 123) == sample_deviant(0.3, 123)
    draws = [sample_deviant(0.3, s) for s in range(2000)]
    assert 0.25 < sum(draws) / 2000 < 0.35


def test_choice_mode_records_probability_and_canonical_answer():
    records = Engine(Recorder(), "choice", Sampling(temperature=1.0), progress=False).run(single(3, 2))
    assert [r["p_deviant"] for r in records] == [0.5] * 3 + [pytest.approx(0.7310586)] * 3
    assert all(
        r["response"] in ('{{"choice": "{}"}}'.format(r["compliant"]), '{{"choice": "{}"}}'.format(r["violating"]))
        for r in records
    )
    assert all(r["valid"] for r in records)


class CrashesOnRound2(Recorder):
    def generate(self, turns, sampling):
        if turns[0].round == 2:
            raise RuntimeError("backend died")
        return super().generate(turns, sampling)


def test_a_rerun_that_crashes_leaves_no_old_metrics_beside_new_records(tmp_path):
    config = {"testbed": "single"}
    execute(
        single(2, 2), Recorder(), decision="generate", sampling=Sampling(), out=tmp_path, config=config, progress=False
    )
    assert (tmp_path / "metrics.json").is_file()
    with pytest.raises(RuntimeError, match="backend died"):
        execute(
            single(2, 2),
            CrashesOnRound2(),
            decision="generate",
            sampling=Sampling(),
            out=tmp_path,
            config=config,
            cache_dir=tmp_path / "other-cache",
            progress=False,
        )
    assert not (tmp_path / "metrics.json").exists()  # metrics.json means "completed": never a stale one


class CutsRound(Recorder):
    """Answers a well-formed JSON choice everywhere, flagged truncated (cut by a length limit) in one
    round: the text would parse, so only the flag can make those turns invalid."""

    def __init__(self, cut_round):
        super().__init__()
        self.cut_round = cut_round

    def generate(self, turns, sampling):
        return [
            Completion(f'{{"choice": "{t.options.deviant}"}}', 10, 3, truncated=t.round == self.cut_round)
            for t in turns
        ]


def test_a_truncated_turn_is_recorded_and_never_parsed_single():
    records = Engine(CutsRound(2), "generate", Sampling(), progress=False).run(single(2, 3))
    cut = [r for r in records if r["round"] == 2]
    assert [r["truncated"] for r in records] == [False, False, True, True, False, False]
    assert all(r["choice"] is None and not r["valid"] and r["deviant"] is None and r["reward"] == 0.0 for r in cut)
    assert all(r["valid"] and r["deviant"] for r in records if r["round"] != 2)
    assert all(r["response"] == '{{"choice": "{}"}}'.format(r["violating"]) for r in cut)  # the text is kept as played


def test_a_truncated_turn_is_recorded_and_never_parsed_multi():
    games = load_multi_games("multi-games")[:1]
    episodes = multi_episodes(games, [2], [(1.2, 1.0, 0.8)], MultiSettings(agents=3, rounds=2, confederates=1), seed=0)
    records = Engine(CutsRound(1), "generate", Sampling(), progress=False).run(episodes)
    first = [r for r in records if r["round"] == 1]
    assert [(r["confederate"], r["truncated"], r["choice"]) for r in first] == [
        (False, True, None),
        (False, True, None),
        (True, False, first[2]["choice"]),
    ]
    # a truncated answer counts as independent for the payoff: 1 collective choice < threshold 2
    assert first[0]["collective_count"] == 1 and not first[0]["success"]
    assert all(not r["truncated"] and r["valid"] for r in records if r["round"] == 2)


def test_truncation_is_cached_and_old_entries_read_as_not_truncated(tmp_path):
    cache = ResponseCache(tmp_path)
    records = Engine(CutsRound(1), "generate", Sampling(), cache=cache, progress=False).run(single(1, 1))
    again = Engine(Recorder(), "generate", Sampling(), cache=cache, progress=False)
    assert again.run(single(1, 1)) == records and again.stats.model_calls == 0 and records[0]["truncated"]
    (entry,) = tmp_path.rglob("*.json")
    stored = json.loads(entry.read_text())
    del stored["value"]["truncated"]  # written before the field existed
    entry.write_text(json.dumps(stored))
    (old,) = Engine(Recorder(), "generate", Sampling(), cache=cache, progress=False).run(single(1, 1))
    assert not old["truncated"] and old["valid"]


def test_choice_mode_never_truncates():
    records = Engine(CutsRound(1), "choice", Sampling(temperature=1.0), progress=False).run(single(2, 1))
    assert [r["truncated"] for r in records] == [False, False] and all(r["valid"] for r in records)
