"""Handlers of the run / compare / items commands (argument checks, then the library calls)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from tipping import scenarios
from tipping.errors import InputError
from tipping.metrics import METHODS, paired_difference
from tipping.outputs import read_jsonl, write_json
from tipping.policies import Policy, Sampling, load_policy
from tipping.runs import execute, multi_episodes, single_episodes
from tipping.testbeds.multi import MultiSettings
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


def _execute(args, testbed: str, episodes, config: dict) -> int:
    config["tags"] = parse_tags(args.tag)
    policy = policy_from_args(args)
    try:
        sampling = resolve_sampling(policy, args)
        execute(episodes, policy, decision=args.decision, sampling=sampling, out=Path(args.out),
                config={"testbed": testbed, **config}, cache_dir=args.cache_dir, batch_size=args.batch_size,
                progress=not args.no_progress)
    finally:
        policy.close()
    return 0


def run_single(args) -> int:
    _common_checks(args)
    _check(args.supervision in SUPERVISION_PATTERNS,
           f"--supervision {args.supervision!r} is not a pattern; expected one of {', '.join(SUPERVISION_PATTERNS)}")
    items = scenarios.load_single_items(args.items, seed=args.seed)[: args.limit]
    settings = SingleSettings(rounds=args.rounds, window=args.window, supervision=args.supervision,
                              feedback=args.feedback, parser=args.parser, option_order=args.option_order)
    return _execute(args, "single", single_episodes(items, settings, args.seed),
                    {"items": args.items, "n_items": len(items), "seed": args.seed, **asdict(settings)})


def run_multi(args) -> int:
    _common_checks(args)
    _check(args.agents >= 2, f"--agents must be >= 2, got {args.agents}")
    _check(bool(args.thresholds), "--thresholds is empty; give e.g. 2,4,6,8")
    for t in args.thresholds:
        _check(1 <= t <= args.agents, f"--thresholds: {t} is outside 1..{args.agents} (the number of --agents)")
    reward_sets = args.reward_sets or [[1.2, 1.0, 0.8]]
    for rs in reward_sets:
        _check(len(rs) == 3, f"--reward-sets {','.join(map(str, rs))}: expected three factors HIGH,NORMAL,LOW")
    _check(0 <= args.confederates < args.agents,
           f"--confederates must be in 0..{args.agents - 1}, got {args.confederates}")
    games = scenarios.load_multi_games(args.scenarios)[: args.limit]
    settings = MultiSettings(agents=args.agents, rounds=args.rounds, window=args.window,
                             reward_mode=args.reward_mode, success_applies_to_all=args.success_applies_to == "all",
                             peer_history=args.peer_history, confederates=args.confederates,
                             confederate_position=args.confederate_position, feedback=args.feedback,
                             parser=args.parser, option_order=args.option_order)
    episodes = multi_episodes(games, args.thresholds, [tuple(rs) for rs in reward_sets], settings, args.seed)
    return _execute(args, "multi", episodes,
                    {"scenarios": args.scenarios, "games": [g.name for g in games], "thresholds": args.thresholds,
                     "reward_sets": reward_sets, "seed": args.seed, **asdict(settings)})


SAME_FOR_PAIRING = {  # a paired effect needs these equal; feedback, supervision, option order may differ
    "single": ("items", "items_seed", "n_items", "seed", "rounds", "window", "policy"),
    "multi": ("scenarios", "games", "items_seed", "thresholds", "reward_sets", "agents", "seed", "rounds", "window",
              "policy"),
}


def _load_run(folder: str) -> tuple[dict, list[dict]]:
    folder = Path(folder)
    for name in ("run.json", "records.jsonl", "metrics.json"):  # metrics.json is written last
        if not (folder / name).is_file():
            raise InputError(f"{folder / name}: not found; is {folder} a finished `tipping run` folder?")
    try:
        config = json.loads((folder / "run.json").read_text())["config"]
    except (ValueError, KeyError) as exc:
        raise InputError(f"{folder / 'run.json'}: unreadable run output ({exc})") from None
    return config, [r for r in read_jsonl(folder / "records.jsonl") if not r.get("confederate")]


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

    items = make_split(args.split, args.seed)
    scenarios.write_items(items, Path(args.out))
    print(f"wrote {len(items)} items to {args.out}")
    return 0


def import_items(args) -> int:
    loaded = scenarios.load_any(args.path)
    scenarios.write_items(loaded, Path(args.out))
    print(f"wrote {len(loaded)} records to {args.out}")
    return 0
