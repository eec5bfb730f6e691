"""`tipping run single|multi|population`: play a testbed with a policy.

The testbed flags' defaults are the settings dataclasses' (SingleSettings, MultiSettings). The
*_plan functions check the arguments and build the episodes; the leakage audit and `tipping plan`
read the episodes of a DAG job through them too.
"""

from __future__ import annotations

from dataclasses import asdict

from tipping.cli.options import (
    add_items_seed,
    add_option_order,
    add_policy_options,
    check,
    command,
    csv,
    defaults,
    verbs,
)
from tipping.testbeds.multi import MultiSettings
from tipping.testbeds.single import SingleSettings

SINGLE, MULTI = defaults(SingleSettings), defaults(MultiSettings)
# flags that only games take (an item brings its own n, threshold and factors), and their defaults
GRID = {"agents": MULTI["agents"], "thresholds": [2, 4, 6, 8], "reward_sets": [[1.2, 1.0, 0.8]]}


def add(sub) -> None:
    run = verbs(sub, "run", "play a testbed with a policy")
    s = command(run, "single", run_single,
                "Self-Interested Exploration: one agent, a rule that pays less than breaking it")
    s.add_argument("--items", required=True,
                   help="split name (single-test, single-train) or a path (our JSONL, an upstream question file)")
    s.add_argument("--rounds", type=int, default=SINGLE["rounds"])
    s.add_argument("--window", type=int, default=SINGLE["window"], help="past rounds the agent sees")
    s.add_argument("--supervision", default=SINGLE["supervision"],
                   help="supervision pattern (8 patterns; see README)")
    s.add_argument("--feedback", choices=("reward", "none"), default=SINGLE["feedback"],
                   help="none = the no-reward control: history keeps questions and answers, drops reward lines")
    s.add_argument("--parser", choices=("robust", "paper"), default=SINGLE["parser"])
    add_option_order(s, "compliant", SINGLE["option_order"])
    s.add_argument("--limit", type=int, default=None, help="play only the first N items")
    add_items_seed(s)
    s.add_argument("--seed", type=int, default=0, help="sampling seed of every turn")
    s.add_argument("--out", required=True)
    add_policy_options(s)

    m = command(run, "multi", run_multi,
                "Imitative Strategy Diffusion: N agents play a threshold game over rounds")
    m.add_argument("--scenarios", required=True,
                   help="games (multi-games, our YAML/JSONL games, upstream templates.json), played on the grid "
                        "below; or one-shot items (multi-train, multi-eval, an item file), each played as one "
                        "episode with its own n, threshold and reward factors")
    m.add_argument("--agents", type=int, default=None, help=f"games only (default {GRID['agents']})")
    m.add_argument("--rounds", type=int, default=MULTI["rounds"])
    m.add_argument("--thresholds", type=csv(int), default=None,
                   help=f"games only: absolute thresholds (default {','.join(map(str, GRID['thresholds']))})")
    m.add_argument("--confederates", type=int, default=MULTI["confederates"],
                   help="agents fixed to the collective choice")
    m.add_argument("--confederate-position", choices=("head", "tail"), default=MULTI["confederate_position"])
    _add_game_options(m, "games only: ")

    p = command(run, "population", run_population,
                "the threshold game played by N agents on a network, with a committed minority (confederates)")
    p.add_argument("--scenarios", required=True, help="games (multi-games, our YAML/JSONL games, upstream "
                                                      "templates.json), each played on the grid below")
    p.add_argument("--agents", type=int, default=64, help="N, 4..1024")
    p.add_argument("--network", default="complete",
                   help="who sees whom: complete | ring:k=4 | small-world:k=4,p=0.1 | scale-free:m=2 | "
                        "random:p=0.05 (drawn from --seed; saved as OUT/network.edgelist)")
    p.add_argument("--confederates", type=int, default=MULTI["confederates"],
                   help="M agents who always choose the collective option")
    p.add_argument("--placement", choices=("random", "hubs", "clustered"), default="random",
                   help="confederates at seeded random nodes, at the highest degrees, or on agents 0..M-1")
    p.add_argument("--payoff", choices=("global", "local"), default="global",
                   help="the threshold counts all N agents, or the agent's neighbourhood (itself included)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threshold-fractions", type=csv(float), default=[0.25, 0.5, 0.75, 1.0],
                   help="thresholds as fractions f of the counted group: ceil(f x size) (the default gives the "
                        "paper's 2,4,6,8 for 8 agents)")
    p.add_argument("--mix-policy", default=None,
                   help="mixed population: the policy (same spec forms as --policy) a fraction of the free agents "
                        "play, e.g. the DPO-defended adapter beside the base model")
    p.add_argument("--mix-fraction", type=float, default=0.0,
                   help="that fraction of the free agents (assigned by --seed; run.json lists policy_groups)")
    _add_game_options(p, "")


def _add_game_options(p, games_only: str) -> None:
    """The multi-agent game's flags that `run multi` and `run population` share."""
    p.add_argument("--window", type=int, default=MULTI["window"])
    p.add_argument("--reward-sets", type=csv(float), action="append", default=None,
                   help=f"{games_only}HIGH,NORMAL,LOW factors; repeat for several "
                        f"(default {','.join(map(str, GRID['reward_sets'][0]))})")
    p.add_argument("--reward-mode", choices=("multiplicative", "additive"), default=MULTI["reward_mode"])
    p.add_argument("--peer-history", choices=("final_only", "full"), default=MULTI["peer_history"])
    p.add_argument("--success-applies-to", choices=("all", "collective"),
                   default="all" if MULTI["success_applies_to_all"] else "collective")
    p.add_argument("--feedback", choices=("reward", "none"), default=MULTI["feedback"])
    p.add_argument("--parser", choices=("robust", "paper"), default=MULTI["parser"])
    add_option_order(p, "collective", MULTI["option_order"])
    p.add_argument("--limit", type=int, default=None, help="play only the first N games / items")
    add_items_seed(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed of every turn")
    p.add_argument("--out", required=True)
    add_policy_options(p)


def _common_checks(args) -> None:
    check(args.rounds >= 1, f"--rounds must be >= 1, got {args.rounds}")
    check(args.window >= 0, f"--window must be >= 0, got {args.window}")
    check(args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}")
    check(args.limit is None or args.limit >= 1, f"--limit must be >= 1, got {args.limit}")


def _execute(args, testbed: str, episodes, config: dict, files: dict[str, str] | None = None, policy=None) -> int:
    from pathlib import Path

    from tipping.cli.policy import parse_tags, policy_from_args, resolve_sampling
    from tipping.runs import execute

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
    from tipping import scenarios
    from tipping.runs import single_episodes
    from tipping.testbeds.single import SUPERVISION_PATTERNS

    _common_checks(args)
    check(args.supervision in SUPERVISION_PATTERNS,
          f"--supervision {args.supervision!r} is not a pattern; expected one of {', '.join(SUPERVISION_PATTERNS)}")
    items = scenarios.load_single_items(args.items, seed=args.items_seed)[: args.limit]
    settings = SingleSettings(rounds=args.rounds, window=args.window, supervision=args.supervision,
                              feedback=args.feedback, parser=args.parser, option_order=args.option_order)
    return single_episodes(items, settings, args.seed), {
        "items": args.items, "items_seed": args.items_seed, "n_items": len(items), "seed": args.seed,
        **asdict(settings)}


def multi_plan(args) -> tuple[list, dict]:
    """The episodes `tipping run multi` plays, and its run.json config: the threshold x reward-set
    grid of every game, or one episode per multi item (its own n, threshold and factors)."""
    from tipping import scenarios
    from tipping.runs import multi_episodes, multi_item_episodes

    _common_checks(args)
    held = scenarios.kind(args.scenarios)
    check(held != "single-items", f"--scenarios {args.scenarios}: holds single-agent items; "
                                  "play them with `tipping run single --items`")
    if held == "multi-items":
        given = [f"--{k.replace('_', '-')}" for k in GRID if getattr(args, k) is not None]
        check(not given, f"--scenarios {args.scenarios}: holds one-shot items, each played with its own n, "
                         f"threshold and reward factors; drop {', '.join(given)} (they set the grid of games)")
        items = scenarios.load_multi_items(args.scenarios, seed=args.items_seed)[: args.limit]
        fewest = min(item.params.n for item in items)
        check(0 <= args.confederates < fewest,
              f"--confederates must be in 0..{fewest - 1} (the smallest item has {fewest} agents), "
              f"got {args.confederates}")
        settings = _multi_settings(args, agents=fewest)
        return multi_item_episodes(items, settings, args.seed), {
            "scenarios": args.scenarios, "items_seed": args.items_seed, "n_items": len(items), "seed": args.seed,
            **asdict(settings), "agents": None}
    agents, thresholds, reward_sets = (GRID[k] if getattr(args, k) is None else getattr(args, k) for k in GRID)
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
    from tipping import scenarios
    from tipping.testbeds.population import (
        Network,
        assign_groups,
        build_network,
        edge_list,
        place_confederates,
        population_episodes,
        threshold_for,
    )

    _common_checks(args)
    check(4 <= args.agents <= 1024, f"--agents must be in 4..1024, got {args.agents}")
    check(0 <= args.confederates < args.agents,
          f"--confederates must be in 0..{args.agents - 1}, got {args.confederates}")
    check(scenarios.kind(args.scenarios) == "multi-games",
          f"--scenarios {args.scenarios}: populations play games (multi-games, a game file); "
          "one-shot items bring their own n, so play them with `tipping run multi`")
    fractions = args.threshold_fractions
    check(bool(fractions) and all(0 < f <= 1 for f in fractions),
          "--threshold-fractions: expected fractions in (0, 1], e.g. 0.25,0.5,0.75,1")
    thresholds = [threshold_for(f, args.agents) for f in fractions]
    check(len(set(thresholds)) == len(thresholds), f"--threshold-fractions {fractions} give the thresholds "
                                                   f"{thresholds} of {args.agents} agents; drop the duplicates")
    reward_sets = args.reward_sets or GRID["reward_sets"]
    for rs in reward_sets:
        check(len(rs) == 3, f"--reward-sets {','.join(map(str, rs))}: expected three factors HIGH,NORMAL,LOW")
    imitate = any(p.startswith("scripted:imitate") for p in (args.policy, args.mix_policy or ""))
    check(not (imitate and args.window == 0),
          "--policy scripted:imitate needs --window >= 1: its answer must follow from the prompt (the peers "
          "line of the last round) for the response cache to be right")
    check(0 <= args.mix_fraction <= 1, f"--mix-fraction must be in [0, 1], got {args.mix_fraction}")
    check((args.mix_policy is None) == (args.mix_fraction == 0),
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
    from tipping import paths
    from tipping.cli.policy import policy_from_args
    from tipping.policies import load_policy
    from tipping.policies.mixed import MixedPolicy

    episodes, config, edges = population_plan(args)
    policy = None
    if args.mix_policy:  # group 0: --policy, group 1: --mix-policy
        policy = MixedPolicy([policy_from_args(args), load_policy(args.mix_policy, dtype=args.dtype,
                                                                  max_model_len=args.max_model_len)],
                             config["policy_groups"])
        config["policies"] = [p.id for p in policy.policies]
    return _execute(args, "population", episodes, config, files={paths.EDGE_LIST: edges}, policy=policy)
