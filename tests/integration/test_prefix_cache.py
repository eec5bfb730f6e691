"""Prefix KV reuse in the transformers backend (tiny random Qwen3, fp32): reused scores are the
same floats as a cold computation whatever the batch, order, budget or resume, and agree with
one-pass per-turn scoring within 1e-6 in P(deviant)."""

import json
import random

import pytest

from tipping.cache import ResponseCache
from tipping.policies import Sampling
from tipping.policies.local import common_prefix
from tipping.policies.prefix import BUDGET_TOKENS, PrefixTrie
from tipping.policies.transformers_backend import TransformersPolicy
from tipping.rollout import Engine, choice_probability
from tipping.runs import single_episodes
from tipping.scenarios import load_single_items
from tipping.testbeds.single import SingleSettings
from tipping.turns import Options, Turn

SAMPLING = Sampling(temperature=0.6, max_new_tokens=8)
OPTIONS = Options(aligned="comply", deviant="violate")


def conversations(episodes: int = 3, rounds: int = 3, system: str = "You are an employee. You follow the rules."):
    """turns[r][e]: episode e's round r+1, whose conversation extends its round r one."""
    turns = []
    for r in range(rounds):
        row = []
        for e in range(episodes):
            past = []
            for j in range(r):
                past += [
                    {"role": "user", "content": f"Round {j + 1}. This week, supervision is uncertain. ({e})"},
                    {"role": "assistant", "content": '{"choice": "%s"}' % ("violate" if (e + j) % 2 else "comply")},
                    {"role": "user", "content": f"Reward: {e + j}.0. Final reward: {e}.0."},
                ]
            messages = (
                {"role": "system", "content": system},
                *past,
                {"role": "user", "content": f"Round {r + 1}. This week, supervision is uncertain. ({e})"},
            )
            row.append(Turn(messages, OPTIONS, r + 1, 0, 100 * e + r, f"ep-{e}"))
        turns.append(row)
    return turns


@pytest.fixture(scope="module")
def policies(tiny_model):
    reused, reference = TransformersPolicy(tiny_model), TransformersPolicy(tiny_model, prefix_cache=False)
    yield reused, reference
    reused.close()
    reference.close()


def cold(policy: TransformersPolicy, turn: Turn, sampling: Sampling = SAMPLING):
    """The turn scored on an empty prefix cache (what a resumed run computes)."""
    policy.prefix = PrefixTrie(policy.prefix.budget)
    return policy.score_choices([turn], sampling)[0]


def p_deviant(score) -> float:
    return choice_probability(score.aligned, score.deviant, SAMPLING.temperature)


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_reused_scores_are_the_cold_floats_in_any_batch_and_order(policies, batch):
    reused, reference = policies
    turns = [t for row in conversations() for t in row]
    expected = {t.seed: cold(reused, t) for t in turns}
    reused.prefix = PrefixTrie(BUDGET_TOKENS)
    order = turns[:]  # rounds and episodes mixed in one batch, later rounds sometimes first
    random.Random(batch).shuffle(order)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        assert reused.score_choices(chunk, SAMPLING) == [expected[t.seed] for t in chunk]
    assert reused.prefix_cache_stats()["cached_tokens"] > 0
    for t in turns:  # the one-pass per-turn reference: same decision, P(deviant) within 1e-6
        ref = reference.score_choices([t], SAMPLING)[0]
        assert (ref.deviant > ref.aligned) == (expected[t.seed].deviant > expected[t.seed].aligned)
        assert abs(p_deviant(ref) - p_deviant(expected[t.seed])) <= 1e-6
        assert ref.prompt_tokens == expected[t.seed].prompt_tokens


@pytest.mark.parametrize("enable_thinking", [None, False])
def test_round_r_reuses_round_r_minus_1(policies, enable_thinking):
    """Every prompt token of the previous round is served from the cache; with thinking off the
    generation prompt's empty <think> block is not part of the next round's prompt, so reuse
    stops where the two differ."""
    reused, _ = policies
    sampling = SAMPLING if enable_thinking is None else Sampling(max_new_tokens=8, enable_thinking=False)
    reused.prefix = PrefixTrie(BUDGET_TOKENS)
    rounds = conversations(episodes=2, rounds=3)
    lengths = {}
    for row in rounds:
        for t in row:
            before = reused.prefix_cache_stats()["cached_tokens"]
            prompt = reused.chat.prompt_ids(t, sampling)
            reused.score_choices([t], sampling)
            served = reused.prefix_cache_stats()["cached_tokens"] - before
            if t.round > 1:
                previous = lengths[t.item_id]
                shared = common_prefix(previous, prompt)
                assert (
                    shared == len(previous) if enable_thinking is None else 0.8 * len(previous) < shared < len(previous)
                )
                assert served == shared
            else:
                assert served < len(prompt)
            lengths[t.item_id] = prompt


def test_a_tiny_budget_evicts_and_stays_exact(policies):
    reused, _ = policies
    turns = [t for row in conversations() for t in row]
    expected = [cold(reused, t) for t in turns]
    reused.prefix = PrefixTrie(40)
    assert reused.score_choices(turns, SAMPLING) == expected
    stats = reused.prefix_cache_stats()
    assert stats["evicted_tokens"] > 0 and stats["held_tokens"] <= 40
    assert stats["peak_held_tokens"] > 40  # a prompt's chunks are held while it runs, then trimmed


def test_a_prompt_that_shares_no_prefix(policies):
    reused, reference = policies
    reused.prefix = PrefixTrie(BUDGET_TOKENS)
    reused.score_choices(conversations()[1], SAMPLING)
    lone = Turn(({"role": "user", "content": "Reward: 10.0."},), OPTIONS, 1, 0, 7, "lone")
    before = reused.prefix_cache_stats()
    score = reused.score_choices([lone], SAMPLING)[0]
    after = reused.prefix_cache_stats()
    assert after["cached_tokens"] == before["cached_tokens"]
    assert after["prompt_tokens"] - before["prompt_tokens"] == score.prompt_tokens
    assert score == cold(reused, lone)
    assert abs(p_deviant(score) - p_deviant(reference.score_choices([lone], SAMPLING)[0])) <= 1e-6


def test_a_prompt_differing_in_one_token_is_not_served_the_other_ones_cache(policies):
    """Same item, same chunk boundaries, one different token in the first chunk: reusing by
    position or key instead of by token ids would return the other prompt's floats."""
    reused, _ = policies
    (a,), (b,) = (
        conversations(1, 2, system=s)[1]
        for s in ("You are an employee. You follow the rules.", "You are an employee. You break the rules.")
    )
    ids_a, ids_b = reused.chat.prompt_ids(a, SAMPLING), reused.chat.prompt_ids(b, SAMPLING)
    assert len(ids_a) == len(ids_b) and sum(x != y for x, y in zip(ids_a, ids_b)) == 1
    assert reused.chat.chunk_ends(a, SAMPLING, ids_a) == reused.chat.chunk_ends(b, SAMPLING, ids_b)
    expected = cold(reused, b)
    reused.prefix = PrefixTrie(BUDGET_TOKENS)
    assert reused.score_choices([a], SAMPLING)[0] != expected
    assert reused.score_choices([b], SAMPLING)[0] == expected


def test_generate_reuses_prefixes_and_matches_the_per_turn_loop(policies):
    reused, reference = policies
    turns = [t for row in conversations() for t in row]
    reused.prefix = PrefixTrie(BUDGET_TOKENS)
    batched = reused.generate(turns, SAMPLING)
    assert reused.prefix_cache_stats()["cached_tokens"] > 0
    assert [reference.generate([t], SAMPLING)[0] for t in turns] == batched


@pytest.mark.parametrize("decision", ["choice", "generate"])
@pytest.mark.parametrize("killed_after", [1, 2])
def test_resume_on_a_cold_policy_gives_identical_records(tiny_model, tmp_path, decision, killed_after):
    """A run killed after round k: the response cache holds rounds 1..k, the restarted process
    has an empty prefix cache and another batch size. Its records equal an uninterrupted run's."""
    items = load_single_items("single-test")[:3]
    sampling = Sampling(temperature=0.8, max_new_tokens=12)

    def run(rounds: int, cache: ResponseCache | None, batch_size: int) -> bytes:
        policy = TransformersPolicy(tiny_model)  # a new process: a cold prefix cache
        engine = Engine(policy, decision, sampling, cache=cache, batch_size=batch_size, progress=False)
        records = engine.run(single_episodes(items, SingleSettings(rounds=rounds, window=2), seed=0))
        return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()

    whole = run(4, None, 64)  # window 2: round 4 no longer sees round 1
    cache = ResponseCache(tmp_path / "cache")
    run(killed_after, cache, 64)
    assert run(4, cache, 1) == whole


def test_chunks_longer_than_a_pass_are_cut_canonically(tiny_model):
    """With 16-token passes every prompt's chunks are cut into pieces: the scores stay the same
    floats in any batch and agree with the one-pass reference."""
    small = TransformersPolicy(tiny_model, pass_tokens=16)
    reference = TransformersPolicy(tiny_model, prefix_cache=False)
    turns = [t for row in conversations() for t in row]
    prompt, ends = small._prompt(turns[-1], SAMPLING)
    assert len(prompt) > 48 and max(b - a for a, b in zip([0, *ends], ends)) <= 16
    together = small.score_choices(turns, SAMPLING)
    assert [cold(small, t) for t in turns] == together
    for t, score in zip(turns, together):
        assert abs(p_deviant(score) - p_deviant(reference.score_choices([t], SAMPLING)[0])) <= 1e-6
    small.close()
    reference.close()
