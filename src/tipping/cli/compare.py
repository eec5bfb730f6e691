"""`tipping compare TREATMENT CONTROL`: the tipping effect of two paired runs (tipping.metrics.paired_effect)."""

from __future__ import annotations

from tipping.cli.options import command
from tipping.errors import check

SAME_FOR_PAIRING = {  # a paired effect needs these equal; feedback, supervision, option order may differ
    "single": ("items", "items_seed", "n_items", "seed", "rounds", "window", "policy"),
    "multi": (
        "scenarios",
        "games",
        "items_seed",
        "thresholds",
        "reward_sets",
        "agents",
        "seed",
        "rounds",
        "window",
        "policy",
    ),
    "population": (
        "scenarios",
        "games",
        "items_seed",
        "thresholds",
        "reward_sets",
        "agents",
        "seed",
        "rounds",
        "window",
        "policy",
        "network",
        "payoff",
        "confederate_agents",
        "policy_groups",
    ),
}


def add(sub) -> None:
    c = command(
        sub,
        "compare",
        compare,
        "the tipping effect: per-round paired difference treatment - control (same items and "
        "seeds) with a 95%% interval and a McNemar p-value",
    )
    c.add_argument("treatment")
    c.add_argument("control")
    c.add_argument("--out", required=True, help="folder for effect.json")


def _load_run(folder: str) -> tuple[dict, list[dict]]:
    from tipping.records import RunFolder

    run = RunFolder(folder)
    return run.config, [r for r in run.records if not r.get("confederate")]


def compare(args) -> int:
    import json
    from pathlib import Path

    from tipping.metrics import METHODS, paired_effect, turn_key
    from tipping.outputs import write_json

    (tc, t), (cc, c) = _load_run(args.treatment), _load_run(args.control)
    check(
        tc.get("testbed") == cc.get("testbed"),
        f"{args.treatment} is a {tc.get('testbed')} run but {args.control} is a {cc.get('testbed')} run",
    )
    for field in SAME_FOR_PAIRING[tc["testbed"]]:
        check(
            tc.get(field) == cc.get(field),
            f"compare: treatment and control differ in {field} ({json.dumps(tc.get(field))} vs "
            f"{json.dumps(cc.get(field))}); a paired effect needs the same items, seed, rounds, window and policy",
        )
    unpaired = {turn_key(r) for r in t} ^ {turn_key(r) for r in c}
    check(
        not unpaired,
        f"compare: {len(unpaired)} turns of {args.treatment} and {args.control} have no partner "
        "(same episode, agent and round); are both records.jsonl complete?",
    )
    result = {
        "testbed": tc["testbed"],
        "treatment": str(args.treatment),
        "control": str(args.control),
        "methods": METHODS,
    }
    if tc["testbed"] == "single":
        result["rounds"] = paired_effect(t, c)
    else:
        cell = lambda r: (r["threshold"], tuple(r["rewards"]))  # noqa: E731
        result["cells"] = [
            {
                "threshold": key[0],
                "rewards": list(key[1]),
                "rounds": paired_effect([r for r in t if cell(r) == key], [r for r in c if cell(r) == key]),
            }
            for key in sorted({cell(r) for r in t})
        ]
        result["pooled"] = paired_effect(t, c)
    write_json(Path(args.out) / "effect.json", result)
    print(f"wrote {Path(args.out) / 'effect.json'}")
    return 0
