"""One run of a testbed: arguments -> episodes (the *_plan functions) -> rollout -> records,
metrics and provenance.

The output folder is the contract later steps rely on (tipping.records writes it): records.jsonl,
prompts.jsonl, metrics.json (per-round rates with 95% intervals; deterministic: same records, same
file), run.json (the resolved config, package versions and throughput: turns/s, cache hits) and, for
population runs, network.edgelist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tipping import metrics, scenarios
from tipping.cache import ResponseCache
from tipping.errors import check
from tipping.outputs import output_lock, versions
from tipping.paths import METRICS_JSON, RECORDS_JSONL
from tipping.policies import Policy, Sampling
from tipping.records import unfinish, write_run
from tipping.rollout import BATCH_SIZE, Decision, Engine
from tipping.scenarios.models import MultiItem, MultiScenario, SingleItem
from tipping.testbeds.multi import GAME_GRID, MultiEpisode, MultiSettings
from tipping.testbeds.population import (
    Network,
    assign_groups,
    build_network,
    edge_list,
    place_confederates,
    population_episodes,
    threshold_for,
)
from tipping.testbeds.single import SUPERVISION_PATTERNS, SingleEpisode, SingleSettings


def single_episodes(items: Sequence[SingleItem], settings: SingleSettings, seed: int) -> list[SingleEpisode]:
    return [SingleEpisode(item, settings, seed) for item in items]


def multi_episodes(
    games: Sequence[MultiScenario],
    thresholds: Sequence[int],
    reward_sets: Sequence[tuple[float, float, float]],
    settings: MultiSettings,
    seed: int,
) -> list[MultiEpisode]:
    """The paper's grid: every threshold x reward set x game is one episode."""
    return [
        MultiEpisode(game, t, rewards, settings, seed) for t in thresholds for rewards in reward_sets for game in games
    ]


def multi_item_episodes(items: Sequence[MultiItem], settings: MultiSettings, seed: int) -> list[MultiEpisode]:
    """Every item is one episode of its own game (its n, threshold and reward factors)."""
    return [MultiEpisode.from_item(item, settings, seed) for item in items]


def execute(
    episodes: Sequence,
    policy: Policy,
    *,
    decision: Decision,
    sampling: Sampling,
    out: Path,
    config: dict,
    cache_dir: Path | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    files: dict[str, str] | None = None,
) -> dict:
    """Play the episodes and write the output folder (with `files`: name -> text); returns
    metrics.json's content."""
    out = Path(out)
    with output_lock(out):
        unfinish(out)
        cache = ResponseCache(Path(cache_dir) if cache_dir else out / "cache")
        engine = Engine(policy, decision, sampling, cache=cache, batch_size=batch_size, progress=progress)
        records = engine.run(episodes)
        result = metrics.single_metrics(records) if config["testbed"] == "single" else metrics.multi_metrics(records)
        result["prompt_tokens"] = sum(r["prompt_tokens"] for r in records)
        result["completion_tokens"] = sum(r["completion_tokens"] for r in records)
        result["turns"] = len(records)
        write_run(
            out,
            records,
            engine.prompts,
            {
                "config": {**config, "policy": policy.id, "decision": decision, "sampling": asdict(sampling)},
                "versions": versions(),
                "stats": engine.stats.to_dict(),
            },
            result,
            files,
        )
        s = engine.stats
        print(
            f"{len(records)} turns, {s.model_calls} model calls, {s.cache_hits} cache hits"
            f"{' (nothing recomputed)' if s.model_calls == 0 else ''}; wrote {out}/{RECORDS_JSONL}, {METRICS_JSON}"
        )
        return result


# --- what a run of `tipping run` arguments plays (its handler, the leakage audit and `tipping plan`) ---


def _common_checks(args) -> None:
    check(args.rounds >= 1, f"--rounds must be >= 1, got {args.rounds}")
    check(args.window >= 0, f"--window must be >= 0, got {args.window}")
    check(args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}")
    check(args.limit is None or args.limit >= 1, f"--limit must be >= 1, got {args.limit}")


def single_plan(args) -> tuple[list, dict]:
    """The episodes `tipping run single` plays, and its run.json config (the leakage audit reads
    the episodes of every DAG job through this too)."""

    _common_checks(args)
    check(
        args.supervision in SUPERVISION_PATTERNS,
        f"--supervision {args.supervision!r} is not a pattern; expected one of {', '.join(SUPERVISION_PATTERNS)}",
    )
    items = scenarios.load_single_items(args.items, seed=args.items_seed)[: args.limit]
    settings = SingleSettings(
        rounds=args.rounds,
        window=args.window,
        supervision=args.supervision,
        feedback=args.feedback,
        parser=args.parser,
        option_order=args.option_order,
    )
    return single_episodes(items, settings, args.seed), {
        "items": args.items,
        "items_seed": args.items_seed,
        "n_items": len(items),
        "seed": args.seed,
        **asdict(settings),
    }


def multi_plan(args) -> tuple[list, dict]:
    """The episodes `tipping run multi` plays, and its run.json config: the threshold x reward-set
    grid of every game, or one episode per multi item (its own n, threshold and factors)."""

    _common_checks(args)
    held = scenarios.kind(args.scenarios)
    check(
        held != "single-items",
        f"--scenarios {args.scenarios}: holds single-agent items; play them with `tipping run single --items`",
    )
    if held == "multi-items":
        given = [f"--{k.replace('_', '-')}" for k in GAME_GRID if getattr(args, k) is not None]
        check(
            not given,
            f"--scenarios {args.scenarios}: holds one-shot items, each played with its own n, "
            f"threshold and reward factors; drop {', '.join(given)} (they set the grid of games)",
        )
        items = scenarios.load_multi_items(args.scenarios, seed=args.items_seed)[: args.limit]
        fewest = min(item.params.n for item in items)
        check(
            0 <= args.confederates < fewest,
            f"--confederates must be in 0..{fewest - 1} (the smallest item has {fewest} agents), "
            f"got {args.confederates}",
        )
        settings = _multi_settings(args, agents=fewest)
        return multi_item_episodes(items, settings, args.seed), {
            "scenarios": args.scenarios,
            "items_seed": args.items_seed,
            "n_items": len(items),
            "seed": args.seed,
            **asdict(settings),
            "agents": None,
        }
    agents, thresholds, reward_sets = (
        GAME_GRID[k] if getattr(args, k) is None else getattr(args, k) for k in GAME_GRID
    )
    check(agents >= 2, f"--agents must be >= 2, got {agents}")
    check(bool(thresholds), "--thresholds is empty; give e.g. 2,4,6,8")
    for t in thresholds:
        check(1 <= t <= agents, f"--thresholds: {t} is outside 1..{agents} (the number of --agents)")
    for rs in reward_sets:
        check(len(rs) == 3, f"--reward-sets {','.join(map(str, rs))}: expected three factors HIGH,NORMAL,LOW")
    check(0 <= args.confederates < agents, f"--confederates must be in 0..{agents - 1}, got {args.confederates}")
    games = scenarios.load_multi_games(args.scenarios)[: args.limit]
    settings = _multi_settings(args, agents=agents)
    episodes = multi_episodes(games, thresholds, [tuple(rs) for rs in reward_sets], settings, args.seed)
    return episodes, {
        "scenarios": args.scenarios,
        "items_seed": args.items_seed,
        "games": [g.name for g in games],
        "thresholds": thresholds,
        "reward_sets": reward_sets,
        "seed": args.seed,
        **asdict(settings),
    }


def _multi_settings(args, agents: int) -> MultiSettings:
    return MultiSettings(
        agents=agents,
        rounds=args.rounds,
        window=args.window,
        reward_mode=args.reward_mode,
        success_applies_to_all=args.success_applies_to == "all",
        peer_history=args.peer_history,
        confederates=args.confederates,
        confederate_position=getattr(args, "confederate_position", "head"),
        feedback=args.feedback,
        parser=args.parser,
        option_order=args.option_order,
    )


def population_plan(args) -> tuple[list, dict, str]:
    """The episodes `tipping run population` plays, its run.json config and the graph's edge list."""

    _common_checks(args)
    check(4 <= args.agents <= 1024, f"--agents must be in 4..1024, got {args.agents}")
    check(
        0 <= args.confederates < args.agents, f"--confederates must be in 0..{args.agents - 1}, got {args.confederates}"
    )
    check(
        scenarios.kind(args.scenarios) == "multi-games",
        f"--scenarios {args.scenarios}: populations play games (multi-games, a game file); "
        "one-shot items bring their own n, so play them with `tipping run multi`",
    )
    fractions = args.threshold_fractions
    check(
        bool(fractions) and all(0 < f <= 1 for f in fractions),
        "--threshold-fractions: expected fractions in (0, 1], e.g. 0.25,0.5,0.75,1",
    )
    thresholds = [threshold_for(f, args.agents) for f in fractions]
    check(
        len(set(thresholds)) == len(thresholds),
        f"--threshold-fractions {fractions} give the thresholds "
        f"{thresholds} of {args.agents} agents; drop the duplicates",
    )
    reward_sets = args.reward_sets or GAME_GRID["reward_sets"]
    for rs in reward_sets:
        check(len(rs) == 3, f"--reward-sets {','.join(map(str, rs))}: expected three factors HIGH,NORMAL,LOW")
    imitate = any(p.startswith("scripted:imitate") for p in (args.policy, args.mix_policy or ""))
    check(
        not (imitate and args.window == 0),
        "--policy scripted:imitate needs --window >= 1: its answer must follow from the prompt (the peers "
        "line of the last round) for the response cache to be right",
    )
    check(0 <= args.mix_fraction <= 1, f"--mix-fraction must be in [0, 1], got {args.mix_fraction}")
    check(
        (args.mix_policy is None) == (args.mix_fraction == 0),
        "--mix-policy and --mix-fraction go together: give both (or neither)",
    )
    graph = build_network(args.network, args.agents, args.seed)
    network = Network.of(graph, place_confederates(graph, args.confederates, args.placement, args.seed))
    groups = assign_groups(args.agents, network.confederates, args.mix_fraction, args.seed)
    games = scenarios.load_multi_games(args.scenarios)[: args.limit]
    settings = _multi_settings(args, agents=args.agents)
    episodes = population_episodes(
        games, fractions, [tuple(rs) for rs in reward_sets], settings, args.seed, network, args.payoff
    )
    config = {
        "scenarios": args.scenarios,
        "items_seed": args.items_seed,
        "games": [g.name for g in games],
        "threshold_fractions": fractions,
        "thresholds": thresholds,
        "reward_sets": reward_sets,
        "seed": args.seed,
        "network": args.network,
        "placement": args.placement,
        "payoff": args.payoff,
        "confederate_agents": sorted(network.confederates),
        "mix_policy": args.mix_policy,
        "mix_fraction": args.mix_fraction,
        "policy_groups": list(groups),
        **asdict(settings),
    }
    del config["confederate_position"]  # --placement decides
    return episodes, config, edge_list(graph)
