"""Handlers of the run / compare / items commands (argument checks, then the library calls)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from tipping import paths, scenarios
from tipping.errors import InputError
from tipping.metrics import METHODS, paired_difference
from tipping.outputs import write_json
from tipping.policies import Policy, Sampling, load_policy
from tipping.policies.mixed import MixedPolicy
from tipping.records import RunFolder
from tipping.runs import execute, multi_episodes, multi_item_episodes, single_episodes
from tipping.testbeds.multi import MultiSettings
from tipping.testbeds.population import (Network, assign_groups, build_network, edge_list, place_confederates,
                                         population_episodes, threshold_for)
from tipping.testbeds.single import SUPERVISION_PATTERNS, SingleSettings


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def resolve_sampling(policy: Policy, args) -> Sampling:
    """The model's paper defaults, overridden by whatever flags were given."""
    overrides = {k: getattr(args, k) for k in ("temperature", "top_p", "top_k", "max_new_tokens")
                 if getattr(args, k, None) is not None}
    if getattr(args, "enable_thinking", None) is not None:
        overrides["enable_thinking"] = args.enable_thinking == "true"
    sampling = replace(policy.default_sampling, **overrides)
    _check(sampling.temperature >= 0, f"--temperature must be >= 0, got {sampling.temperature}")
    _check(0 < sampling.top_p <= 1, f"--top-p must be in (0, 1], got {sampling.top_p}")
    _check(sampling.max_new_tokens >= 1, f"--max-new-tokens must be >= 1, got {sampling.max_new_tokens}")
    return sampling


def _common_checks(args) -> None:
    _check(args.rounds >= 1, f"--rounds must be >= 1, got {args.rounds}")
    _check(args.window >= 0, f"--window must be >= 0, got {args.window}")
    _check(args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}")
    _check(args.limit is None or args.limit >= 1, f"--limit must be >= 1, got {args.limit}")


def parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        _check(bool(sep and key), f"--tag {pair!r}: expected KEY=VALUE, e.g. --tag defence=dpo")
        tags[key] = value
    return tags


def policy_from_args(args) -> Policy:
    """The --policy with the engine flags every policy-taking command shares."""
    return load_policy(args.policy, dtype=args.dtype, max_model_len=args.max_model_len)


def _execute(args, testbed: str, episodes, config: dict, files: dict[str, str] | None = None,
             policy: Policy | None = None) -> int:
    config["tags"] = parse_tags(args.tag)
    policy = policy or policy_from_args(args)
    try:
        sampling = resolve_sampling(policy, args)
        execute(episodes, policy, decision=args.decision, sampling=sampling, out=Path(args.out),
                config={"testbed": testbed, **config}, cache_dir=args.cache_dir, batch_size=args.batch_size,
                progress=not args.no_progress, files=files)
    finally:
        policy.close()
    return 0


def single_plan(args) -> tuple[list, dict]:
    """The episodes `tipping run single` plays, and its run.json config (the leakage audit reads
    the episodes of every DAG job through this too)."""
    _common_checks(args)
    _check(args.supervision in SUPERVISION_PATTERNS,
           f"--supervision {args.supervision!r} is not a pattern; expected one of {', '.join(SUPERVISION_PATTERNS)}")
    items = scenarios.load_single_items(args.items, seed=args.items_seed)[: args.limit]
    settings = SingleSettings(rounds=args.rounds, window=args.window, supervision=args.supervision,
                              feedback=args.feedback, parser=args.parser, option_order=args.option_order)
    return single_episodes(items, settings, args.seed), {
        "items": args.items, "items_seed": args.items_seed, "n_items": len(items), "seed": args.seed,
        **asdict(settings)}


# flags that only games take (an item brings its own n, threshold and factors), and their defaults
GRID = {"agents": 8, "thresholds": [2, 4, 6, 8], "reward_sets": [[1.2, 1.0, 0.8]]}


def multi_plan(args) -> tuple[list, dict]:
    """The episodes `tipping run multi` plays, and its run.json config: the threshold x reward-set
    grid of every game, or one episode per multi item (its own n, threshold and factors)."""
    _common_checks(args)
    held = scenarios.kind(args.scenarios)
    _check(held != "single-items", f"--scenarios {args.scenarios}: holds single-agent items; "
                                   "play them with `tipping run single --items`")
    if held == "multi-items":
        given = [f"--{k.replace('_', '-')}" for k in GRID if getattr(args, k) is not None]
        _check(not given, f"--scenarios {args.scenarios}: holds one-shot items, each played with its own n, "
                          f"threshold and reward factors; drop {', '.join(given)} (they set the grid of games)")
        items = scenarios.load_multi_items(args.scenarios, seed=args.items_seed)[: args.limit]
        fewest = min(item.params.n for item in items)
        _check(0 <= args.confederates < fewest,
               f"--confederates must be in 0..{fewest - 1} (the smallest item has {fewest} agents), "
               f"got {args.confederates}")
        settings = _multi_settings(args, agents=fewest)
        return multi_item_episodes(items, settings, args.seed), {
            "scenarios": args.scenarios, "items_seed": args.items_seed, "n_items": len(items), "seed": args.seed,
            **asdict(settings), "agents": None}
    agents, thresholds, reward_sets = (GRID[k] if getattr(args, k) is None else getattr(args, k) for k in GRID)
    _check(agents >= 2, f"--agents must be >= 2, got {agents}")
    _check(bool(thresholds), "--thresholds is empty; give e.g. 2,4,6,8")
    for t in thresholds:
        _check(1 <= t <= agents, f"--thresholds: {t} is outside 1..{agents} (the number of --agents)")
    for rs in reward_sets:
        _check(len(rs) == 3, f"--reward-sets {','.join(map(str, rs))}: expected three factors HIGH,NORMAL,LOW")
    _check(0 <= args.confederates < agents, f"--confederates must be in 0..{agents - 1}, got {args.confederates}")
    games = scenarios.load_multi_games(args.scenarios)[: args.limit]
    settings = _multi_settings(args, agents=agents)
    episodes = multi_episodes(games, thresholds, [tuple(rs) for rs in reward_sets], settings, args.seed)
    return episodes, {"scenarios": args.scenarios, "items_seed": args.items_seed, "games": [g.name for g in games],
                      "thresholds": thresholds, "reward_sets": reward_sets, "seed": args.seed, **asdict(settings)}


def _multi_settings(args, agents: int) -> MultiSettings:
    return MultiSettings(agents=agents, rounds=args.rounds, window=args.window, reward_mode=args.reward_mode,
                         success_applies_to_all=args.success_applies_to == "all", peer_history=args.peer_history,
                         confederates=args.confederates,
                         confederate_position=getattr(args, "confederate_position", "head"),
                         feedback=args.feedback, parser=args.parser, option_order=args.option_order)


def population_plan(args) -> tuple[list, dict, str]:
    """The episodes `tipping run population` plays, its run.json config and the graph's edge list."""
    _common_checks(args)
    _check(4 <= args.agents <= 1024, f"--agents must be in 4..1024, got {args.agents}")
    _check(0 <= args.confederates < args.agents,
           f"--confederates must be in 0..{args.agents - 1}, got {args.confederates}")
    _check(scenarios.kind(args.scenarios) == "multi-games",
           f"--scenarios {args.scenarios}: populations play games (multi-games, a game file); "
           "one-shot items bring their own n, so play them with `tipping run multi`")
    fractions = args.threshold_fractions
    _check(bool(fractions) and all(0 < f <= 1 for f in fractions),
           "--threshold-fractions: expected fractions in (0, 1], e.g. 0.25,0.5,0.75,1")
    thresholds = [threshold_for(f, args.agents) for f in fractions]
    _check(len(set(thresholds)) == len(thresholds), f"--threshold-fractions {fractions} give the thresholds "
                                                    f"{thresholds} of {args.agents} agents; drop the duplicates")
    reward_sets = args.reward_sets or GRID["reward_sets"]
    for rs in reward_sets:
        _check(len(rs) == 3, f"--reward-sets {','.join(map(str, rs))}: expected three factors HIGH,NORMAL,LOW")
    imitate = any(p.startswith("scripted:imitate") for p in (args.policy, args.mix_policy or ""))
    _check(not (imitate and args.window == 0),
           "--policy scripted:imitate needs --window >= 1: its answer must follow from the prompt (the peers "
           "line of the last round) for the response cache to be right")
    _check(0 <= args.mix_fraction <= 1, f"--mix-fraction must be in [0, 1], got {args.mix_fraction}")
    _check((args.mix_policy is None) == (args.mix_fraction == 0),
           "--mix-policy and --mix-fraction go together: give both (or neither)")
    graph = build_network(args.network, args.agents, args.seed)
    network = Network.of(graph, place_confederates(graph, args.confederates, args.placement, args.seed))
    groups = assign_groups(args.agents, network.confederates, args.mix_fraction, args.seed)
    games = scenarios.load_multi_games(args.scenarios)[: args.limit]
    settings = _multi_settings(args, agents=args.agents)
    episodes = population_episodes(games, fractions, [tuple(rs) for rs in reward_sets], settings, args.seed,
                                   network, args.payoff)
    config = {"scenarios": args.scenarios, "items_seed": args.items_seed, "games": [g.name for g in games],
              "threshold_fractions": fractions, "thresholds": thresholds, "reward_sets": reward_sets,
              "seed": args.seed, "network": args.network, "placement": args.placement, "payoff": args.payoff,
              "confederate_agents": sorted(network.confederates), "mix_policy": args.mix_policy,
              "mix_fraction": args.mix_fraction, "policy_groups": list(groups), **asdict(settings)}
    del config["confederate_position"]  # --placement decides
    return episodes, config, edge_list(graph)


def run_single(args) -> int:
    episodes, config = single_plan(args)
    return _execute(args, "single", episodes, config)


def run_multi(args) -> int:
    episodes, config = multi_plan(args)
    return _execute(args, "multi", episodes, config)


def run_population(args) -> int:
    episodes, config, edges = population_plan(args)
    policy = None
    if args.mix_policy:  # group 0: --policy, group 1: --mix-policy
        policy = MixedPolicy([policy_from_args(args), load_policy(args.mix_policy, dtype=args.dtype,
                                                                  max_model_len=args.max_model_len)],
                             config["policy_groups"])
        config["policies"] = [p.id for p in policy.policies]
    return _execute(args, "population", episodes, config, files={paths.EDGE_LIST: edges}, policy=policy)


SAME_FOR_PAIRING = {  # a paired effect needs these equal; feedback, supervision, option order may differ
    "single": ("items", "items_seed", "n_items", "seed", "rounds", "window", "policy"),
    "multi": ("scenarios", "games", "items_seed", "thresholds", "reward_sets", "agents", "seed", "rounds", "window",
              "policy"),
    "population": ("scenarios", "games", "items_seed", "thresholds", "reward_sets", "agents", "seed", "rounds",
                   "window", "policy", "network", "payoff", "confederate_agents", "policy_groups"),
}


def _load_run(folder: str) -> tuple[dict, list[dict]]:
    run = RunFolder(folder)
    return run.config, [r for r in run.records if not r.get("confederate")]


def _turn(r: dict) -> tuple:
    return r["episode"], r["agent"], r["round"]


def effect(treatment: list[dict], control: list[dict]) -> list[dict]:
    """Per round: metrics.paired_difference over the turns both runs answered validly at the same
    (episode, agent, round)."""
    paired = {_turn(r): r for r in control}
    by_round = {r["round"]: [] for r in treatment}
    for r in treatment:
        other = paired[_turn(r)]
        if r["valid"] and other["valid"]:
            by_round[r["round"]].append((r["episode"], r["deviant"], other["deviant"]))
    return [{"round": k, **paired_difference(*(list(zip(*pairs)) or ([], [], [])))}
            for k, pairs in sorted(by_round.items())]


def compare(args) -> int:
    (tc, t), (cc, c) = _load_run(args.treatment), _load_run(args.control)
    _check(tc.get("testbed") == cc.get("testbed"),
           f"{args.treatment} is a {tc.get('testbed')} run but {args.control} is a {cc.get('testbed')} run")
    for field in SAME_FOR_PAIRING[tc["testbed"]]:
        _check(tc.get(field) == cc.get(field),
               f"compare: treatment and control differ in {field} ({json.dumps(tc.get(field))} vs "
               f"{json.dumps(cc.get(field))}); a paired effect needs the same items, seed, rounds, window and policy")
    unpaired = {_turn(r) for r in t} ^ {_turn(r) for r in c}
    _check(not unpaired, f"compare: {len(unpaired)} turns of {args.treatment} and {args.control} have no partner "
                         "(same episode, agent and round); are both records.jsonl complete?")
    result = {"testbed": tc["testbed"], "treatment": str(args.treatment), "control": str(args.control),
              "methods": METHODS}
    if tc["testbed"] == "single":
        result["rounds"] = effect(t, c)
    else:
        cell = lambda r: (r["threshold"], tuple(r["rewards"]))  # noqa: E731
        result["cells"] = [{"threshold": key[0], "rewards": list(key[1]),
                            "rounds": effect([r for r in t if cell(r) == key], [r for r in c if cell(r) == key])}
                           for key in sorted({cell(r) for r in t})]
        result["pooled"] = effect(t, c)
    write_json(Path(args.out) / "effect.json", result)
    print(f"wrote {Path(args.out) / 'effect.json'}")
    return 0


def make_items(args) -> int:
    from tipping.scenarios.generator import make_split

    items = make_split(args.split, args.items_seed)
    scenarios.write_items(items, Path(args.out))
    print(f"wrote {len(items)} items to {args.out}")
    return 0


def import_items(args) -> int:
    loaded = scenarios.load_any(args.path)
    scenarios.write_items(loaded, Path(args.out))
    print(f"wrote {len(loaded)} records to {args.out}")
    return 0
