"""The response cache key: every input that decides an answer is in it, and nothing else."""

import dataclasses

import pytest

from tipping.cache import ResponseCache
from tipping.policies.base import Sampling
from tipping.turns import Options, Turn

TURN = Turn(
    messages=({"role": "system", "content": "Be good."}, {"role": "user", "content": "Pick one."}),
    options=Options(aligned="Route A", deviant="Route B"),
    round=2,
    agent=1,
    seed=1234,
    item_id="i1",
)


def key(policy="m", decision="generate", turn=TURN, sampling=Sampling()):
    return ResponseCache.key(policy, decision, turn, sampling)


@pytest.mark.parametrize(
    "change",
    [
        {"policy": "another-model"},
        {"decision": "choice"},
        {"turn": dataclasses.replace(TURN, seed=1235)},
        {"turn": dataclasses.replace(TURN, messages=TURN.messages[:1] + ({"role": "user", "content": "Pick two."},))},
        {"turn": dataclasses.replace(TURN, options=Options(aligned="Route B", deviant="Route A"))},
        {"turn": dataclasses.replace(TURN, options=Options(aligned="Route A", deviant="Route C"))},
        {"sampling": Sampling(temperature=1.0)},
        {"sampling": Sampling(top_p=0.9)},
        {"sampling": Sampling(top_k=20)},
        {"sampling": Sampling(max_new_tokens=64)},
        {"sampling": Sampling(enable_thinking=True)},
    ],
    ids=lambda c: next(iter(c)) + ":" + str(next(iter(c.values())))[:40],
)
def test_every_input_of_an_answer_changes_the_key(change):
    assert key(**change) != key()


def test_inputs_that_do_not_decide_the_answer_share_the_key():
    # the same conversation played by another agent / round / item, with the same seed, is the same request
    assert key(turn=dataclasses.replace(TURN, round=5, agent=3, item_id="other", meta={"x": 1})) == key()


def test_key_is_stable_across_versions():
    """Caches on disk stay valid across releases: a change of this value (field names, serialisation)
    silently turns every cached answer into a recomputation."""
    assert key() == "1bb26c3c9ccf418e80fbd2356698857e2bbdb449977f42b9da1d72546296c03d"


def test_entries_written_by_earlier_versions_are_read(tmp_path):
    """The on-disk layout is part of the cache's contract: root/<first two hex digits>/<key>.json."""
    k = key()
    (tmp_path / k[:2]).mkdir()
    (tmp_path / k[:2] / f"{k}.json").write_text(f'{{"key": "{k}", "value": {{"text": "caf\u00e9"}}}}', encoding="utf-8")
    assert ResponseCache(tmp_path).get(k) == {"text": "caf\u00e9"}
    assert ResponseCache(tmp_path).get(key(policy="other")) is None
