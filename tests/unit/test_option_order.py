"""Option order: the balanced coin is the documented sha256 of (sampling seed, episode id,
"option-order"), so an order is reproducible across versions and independent of the other coins."""

import hashlib

from tipping.scenarios import load_multi_items
from tipping.scenarios.models import GameParams, MultiScenario
from tipping.testbeds.multi import MultiEpisode, MultiSettings
from tipping.turns import Answer, canonical_answer, shown_order

PAPER = ("Route A", "Route B")


def _coin(seed, episode_id):
    """derive_seed(seed, episode_id, "option-order") % 2, written out: sha256 of the parts joined
    by \\x1f, the first 8 bytes big-endian, modulo 2^31 - 1."""
    digest = hashlib.sha256(f"{seed}\x1f{episode_id}\x1foption-order".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1) % 2


def test_balanced_order_swaps_where_the_seeded_coin_says():
    ids = [f"item-{i}" for i in range(16)]
    for seed in (0, 3):
        swapped = [shown_order(PAPER, "balanced", seed, i) == PAPER[::-1] for i in ids]
        assert swapped == [_coin(seed, i) == 1 for i in ids]
        assert 0 < sum(swapped) < len(ids)  # a coin, not a constant


def test_fixed_and_swapped_ignore_the_coin():
    assert all(shown_order(PAPER, "fixed", s, f"e{s}") == PAPER for s in range(8))
    assert all(shown_order(PAPER, "swapped", s, f"e{s}") == PAPER[::-1] for s in range(8))


GAME = MultiScenario(
    name="Fund",
    system_prompt="You are one of {n} investors.",
    user_prompt_mult="{cooperation_threshold}: x{high_reward}, x{low_reward}, x{normal_reward}",
    user_prompt_add="{cooperation_threshold}: {delta_high}, {delta_low}, {delta_normal}",
    user_prompt_train="{cooperation_threshold}: {high_reward} {low_reward} {normal_reward}",
    collective="invest",
    independent="keep money",
    params=GameParams(n=3, cooperation_threshold=2, high_reward=1.2, normal_reward=1.0, low_reward=0.8),
)


def test_a_balanced_multi_episode_tosses_its_coin_with_the_sampling_seed_and_its_own_id():
    for seed in (0, 7):
        episodes = [
            MultiEpisode(GAME, t, (1.2, 1.0, 0.8), MultiSettings(agents=3, option_order="balanced"), seed)
            for t in range(1, 13)
        ]
        listed = ("invest", "keep money")  # the order the instruction lists them
        assert [ep.shown for ep in episodes] == [listed[::-1] if _coin(seed, ep.id) else listed for ep in episodes]
        assert all(
            ep.system_prompt.endswith(f'{{"choice": "{ep.shown[0]}"}} or {{"choice": "{ep.shown[1]}"}}.')
            for ep in episodes
        )


def test_an_item_that_does_not_list_the_answers_records_no_first_option():
    item = load_multi_items("multi-train")[0]
    item = item.model_copy(update={"system_prompt": "Decide with the others.", "user_prompt": "Choose."})
    ep = MultiEpisode.from_item(item, MultiSettings(rounds=1, option_order="fixed"), seed=0)
    assert ep.shown is None
    recs = ep.record(1, [Answer(canonical_answer(item.collective)) for _ in ep.turns(1)])
    assert recs and all(r["shown_first"] is None and r["choice"] == item.collective for r in recs)
