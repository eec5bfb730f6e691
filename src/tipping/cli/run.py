"""`tipping run single|multi|population`: play a testbed with a policy.

The testbed flags' defaults are the settings dataclasses' (SingleSettings, MultiSettings); what a
run of the parsed arguments plays is tipping.runs' *_plan (the leakage audit and `tipping plan`
read a DAG job's episodes through them too).
"""

from __future__ import annotations

from tipping.cli.options import (
    add_items_seed,
    add_option_order,
    add_policy_options,
    command,
    csv,
    defaults,
    verbs,
)
from tipping.testbeds.multi import GAME_GRID as GRID
from tipping.testbeds.multi import MultiSettings
from tipping.testbeds.population import PopulationSettings
from tipping.testbeds.single import SingleSettings

SINGLE, MULTI, POPULATION = defaults(SingleSettings), defaults(MultiSettings), defaults(PopulationSettings)


def add(sub) -> None:
    run = verbs(sub, "run", "play a testbed with a policy")
    s = command(
        run, "single", run_single, "Self-Interested Exploration: one agent, a rule that pays less than breaking it"
    )
    s.add_argument(
        "--items",
        required=True,
        help="split name (single-test, single-train) or a path (our JSONL, an upstream question file)",
    )
    s.add_argument("--rounds", type=int, default=SINGLE["rounds"], help="rounds per episode")
    s.add_argument("--window", type=int, default=SINGLE["window"], help="past rounds the agent sees")
    s.add_argument("--supervision", default=SINGLE["supervision"], help="supervision pattern (8 patterns; see README)")
    s.add_argument(
        "--feedback",
        choices=("reward", "none"),
        default=SINGLE["feedback"],
        help="none = the no-reward control: history keeps questions and answers, drops reward lines",
    )
    s.add_argument("--parser", choices=("robust", "paper"), default=SINGLE["parser"])
    add_option_order(s, "compliant", SINGLE["option_order"])
    s.add_argument("--limit", type=int, default=None, help="play only the first N items")
    add_items_seed(s)
    s.add_argument("--seed", type=int, default=0, help="sampling seed of every turn")
    s.add_argument("--out", required=True)
    add_policy_options(s)

    m = command(run, "multi", run_multi, "Imitative Strategy Diffusion: N agents play a threshold game over rounds")
    m.add_argument(
        "--scenarios",
        required=True,
        help="games (multi-games, our YAML/JSONL games, upstream templates.json), played on the grid "
        "below; or one-shot items (multi-train, multi-eval, an item file), each played as one "
        "episode with its own n, threshold and reward factors",
    )
    m.add_argument(
        "--agents", type=int, default=None, help=f"games only; unset: {GRID['agents']} (items bring their own n)"
    )
    m.add_argument("--rounds", type=int, default=MULTI["rounds"], help="rounds per episode")
    m.add_argument(
        "--thresholds",
        type=csv(int),
        default=None,
        help=f"games only: absolute thresholds; unset: {','.join(map(str, GRID['thresholds']))}",
    )
    m.add_argument(
        "--confederates", type=int, default=MULTI["confederates"], help="agents fixed to the collective choice"
    )
    m.add_argument("--confederate-position", choices=("head", "tail"), default=MULTI["confederate_position"])
    _add_game_options(m, "games only: ")

    p = command(
        run,
        "population",
        run_population,
        "the threshold game played by N agents on a network, with a committed minority (confederates)",
    )
    p.add_argument(
        "--scenarios",
        required=True,
        help="games (multi-games, our YAML/JSONL games, upstream templates.json), each played on the grid below",
    )
    p.add_argument("--agents", type=int, default=POPULATION["agents"], help="N, 4..1024")
    p.add_argument(
        "--network",
        default=POPULATION["network"],
        help="who sees whom: complete | ring:k=4 | small-world:k=4,p=0.1 | scale-free:m=2 | "
        "random:p=0.05 (drawn from --seed; saved as OUT/network.edgelist)",
    )
    p.add_argument(
        "--confederates",
        type=int,
        default=MULTI["confederates"],
        help="M agents who always choose the collective option",
    )
    p.add_argument(
        "--placement",
        choices=("random", "hubs", "clustered"),
        default=POPULATION["placement"],
        help="confederates at seeded random nodes, at the highest degrees, or on agents 0..M-1",
    )
    p.add_argument(
        "--payoff",
        choices=("global", "local"),
        default=POPULATION["payoff"],
        help="the threshold counts all N agents, or the agent's neighbourhood (itself included)",
    )
    p.add_argument("--rounds", type=int, default=POPULATION["rounds"], help="rounds per episode")
    p.add_argument(
        "--threshold-fractions",
        type=csv(float),
        default=list(POPULATION["threshold_fractions"]),
        help="thresholds as fractions f of the counted group: ceil(f x size) (the default gives the "
        "paper's 2,4,6,8 for 8 agents)",
    )
    p.add_argument(
        "--mix-policy",
        default=None,
        help="mixed population: the policy (same spec forms as --policy) a fraction of the free agents "
        "play, e.g. the DPO-defended adapter beside the base model",
    )
    p.add_argument(
        "--mix-fraction",
        type=float,
        default=0.0,
        help="that fraction of the free agents (assigned by --seed; run.json lists policy_groups)",
    )
    _add_game_options(p, "")


def _add_game_options(p, games_only: str) -> None:
    """The multi-agent game's flags that `run multi` and `run population` share."""
    p.add_argument("--window", type=int, default=MULTI["window"])
    p.add_argument(
        "--reward-sets",
        type=csv(float),
        action="append",
        default=None,
        help=f"{games_only}HIGH,NORMAL,LOW factors; repeat for several "
        f"(default {','.join(map(str, GRID['reward_sets'][0]))})",
    )
    p.add_argument("--reward-mode", choices=("multiplicative", "additive"), default=MULTI["reward_mode"])
    p.add_argument("--peer-history", choices=("final_only", "full"), default=MULTI["peer_history"])
    p.add_argument(
        "--success-applies-to",
        choices=("all", "collective"),
        default="all" if MULTI["success_applies_to_all"] else "collective",
    )
    p.add_argument("--feedback", choices=("reward", "none"), default=MULTI["feedback"])
    p.add_argument("--parser", choices=("robust", "paper"), default=MULTI["parser"])
    add_option_order(p, "collective", MULTI["option_order"])
    p.add_argument("--limit", type=int, default=None, help="play only the first N games / items")
    add_items_seed(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed of every turn")
    p.add_argument("--out", required=True)
    add_policy_options(p)


def _execute(args, testbed: str, episodes, config: dict, files: dict[str, str] | None = None, policy=None) -> int:
    from pathlib import Path

    from tipping.cli.policy import parse_tags, policy_from_args, resolve_sampling
    from tipping.runs import execute

    config["tags"] = parse_tags(args.tag)
    policy = policy or policy_from_args(args)
    try:
        sampling = resolve_sampling(policy, args)
        execute(
            episodes,
            policy,
            decision=args.decision,
            sampling=sampling,
            out=Path(args.out),
            config={"testbed": testbed, **config},
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            files=files,
        )
    finally:
        policy.close()
    return 0


def run_single(args) -> int:
    from tipping.runs import single_plan

    episodes, config = single_plan(args)
    return _execute(args, "single", episodes, config)


def run_multi(args) -> int:
    from tipping.runs import multi_plan

    episodes, config = multi_plan(args)
    return _execute(args, "multi", episodes, config)


def run_population(args) -> int:
    from tipping import paths
    from tipping.policies import load_policies
    from tipping.policies.mixed import MixedPolicy
    from tipping.runs import population_plan

    episodes, config, edges = population_plan(args)
    policy = None
    if args.mix_policy:  # group 0: --policy, group 1: --mix-policy
        specs = [args.policy, args.mix_policy]
        policy = MixedPolicy(
            load_policies(specs, dtype=args.dtype, max_model_len=args.max_model_len), config["policy_groups"]
        )
        config["policies"] = [p.id for p in policy.policies]
    return _execute(args, "population", episodes, config, files={paths.EDGE_LIST: edges}, policy=policy)
