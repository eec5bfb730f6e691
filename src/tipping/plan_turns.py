"""The turns a rule's jobs ask the policy, and their prompts' sizes, for `tipping plan`.

Every turn is built by the testbeds' own code, as the rule's command builds it, and played
round by round with the short JSON answer of the aligned option (tipping.plan's docstring says how
the rows use them). A turn is (round, agent, prompt tokens, past answers in the prompt).
"""

from __future__ import annotations

import math
from functools import cache

from tipping import scenarios
from tipping.config import Params
from tipping.pipeline import Parse
from tipping.testbeds.multi import MultiEpisode, MultiSettings
from tipping.testbeds.population import probe_turns
from tipping.testbeds.single import SingleEpisode, SingleSettings
from tipping.turns import Answer, canonical_answer

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 5


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# --- the episodes of a rule, played with short answers ---------------------------------------------


@cache
def _played(
    testbed: str,
    split: str,
    limit: int | None,
    rounds: int,
    window: int,
    agents: int,
    thresholds: tuple,
    reward_sets: tuple,
    items_seed: int,
) -> tuple[tuple[int, int, int, int], ...]:
    if testbed == "single":
        items = scenarios.load_single_items(split, seed=items_seed)[:limit]
        episodes = [SingleEpisode(i, SingleSettings(rounds=rounds, window=window), 0) for i in items]
    elif scenarios.kind(split) == "multi-games":
        settings = MultiSettings(agents=agents, rounds=rounds, window=window)
        episodes = [
            MultiEpisode(g, t, rs, settings, 0)
            for t in thresholds
            for rs in reward_sets
            for g in scenarios.load_multi_games(split)[:limit]
        ]
    else:  # one-shot items: each its own game (n, threshold, factors)
        items = scenarios.load_multi_items(split, seed=items_seed)[:limit]
        episodes = [MultiEpisode.from_item(i, MultiSettings(rounds=rounds, window=window), 0) for i in items]
    return _play(episodes, rounds)


def _seen(r: int, turn) -> tuple[int, int, int, int]:
    """A turn as the rows count it: (round, agent, prompt tokens, past answers in the prompt)."""
    return (
        r,
        turn.agent,
        sum(tokens(m["content"]) + TOKENS_PER_MESSAGE for m in turn.messages),
        sum(m["role"] == "assistant" for m in turn.messages),
    )


def _play(episodes, rounds: int) -> tuple[tuple[int, int, int, int], ...]:
    """Every turn the policy is asked (round-synchronous, as the rollout engine plays), each
    answered with the aligned option's short JSON."""
    seen = []
    for r in range(1, rounds + 1):
        for episode in episodes:
            turns = episode.turns(r)
            seen += [_seen(r, t) for t in turns]
            episode.record(r, [Answer(canonical_answer(t.options.aligned)) for t in turns])
    return tuple(seen)


def played(p: Params, testbed: str, split: str, limit: int | None):
    sec = getattr(p, testbed)
    grid = (
        (sec.agents, tuple(sec.thresholds), tuple(tuple(r) for r in sec.reward_sets))
        if testbed == "multi"
        else (0, (), ())
    )
    return _played(testbed, split, limit, sec.rounds, sec.window, *grid, p.items_seed)


# --- populations: the turns of the jobs, built by the commands' own code from the rules' arguments ---

POPULATION_PROBE = "probe"  # the testbed of a population_probe row
PLACEHOLDER = ("--policy", "scripted:comply", "--out", "-")  # the parsers require them; never used


def population_key(network_slug: str, agents, fraction) -> str:
    """The testbed of a population_run row: a job's network, agents and fraction wildcards."""
    return f"{network_slug} n{agents} f{fraction}"


@cache
def population_played(argv: tuple[str, ...], parse: Parse) -> tuple[tuple[int, int, int, int], ...]:
    """The turns of the job `tipping run population ARGV`: confederates are no turns."""
    from tipping.runs import population_plan

    args = parse(["run", "population", *argv, *PLACEHOLDER])
    return _play(population_plan(args)[0], args.rounds)


@cache
def probed(argv: tuple[str, ...], parse: Parse) -> tuple[tuple[int, int, int, int], ...]:
    """The turns of `tipping population probe ARGV`, as its handler builds them."""
    args = parse(["population", "probe", *argv, *PLACEHOLDER])
    settings = MultiSettings(window=args.window, reward_mode=args.reward_mode)
    return tuple(
        _seen(1 if f is None else 2, t)
        for game in scenarios.load_multi_games(args.scenarios)[: args.limit]
        for f, _, t in probe_turns(
            game, args.threshold_fraction, tuple(args.reward_set), settings, args.seed, args.degree
        )
    )
