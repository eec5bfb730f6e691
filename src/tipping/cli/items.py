"""`tipping items make|import|check`: item files, and the leakage audit (tipping.leakage)."""

from __future__ import annotations

from tipping.cli.options import add_items_seed, command, verbs


def add(sub) -> None:
    items = verbs(sub, "items", "make or import item files")
    mk = command(items, "make", make_items, "write a seeded split as JSONL")
    mk.add_argument("split", help="single-test, single-train, multi-train or multi-eval")
    add_items_seed(mk)
    mk.add_argument("--out", required=True)
    im = command(items, "import", import_items, "convert an upstream JSON file to our JSONL")
    im.add_argument("path")
    im.add_argument("--out", required=True)
    ck = command(
        items,
        "check",
        check_leakage,
        "leakage audit: every evaluation job of the DAG against the training and rollout items upstream "
        "of it; exit 1 if any evaluation prompt is shared",
    )
    ck.add_argument("--params", required=True, help="params.yaml")
    ck.add_argument(
        "--configfile",
        action="append",
        default=[],
        metavar="OVERLAY",
        help="overlays merged on top, as `snakemake --configfile` does (repeatable)",
    )


def make_items(args) -> int:
    from pathlib import Path

    from tipping import scenarios
    from tipping.scenarios.generator import make_split

    items = make_split(args.split, args.items_seed)
    scenarios.write_items(items, Path(args.out))
    print(f"wrote {len(items)} items to {args.out}")
    return 0


def import_items(args) -> int:
    from pathlib import Path

    from tipping import scenarios

    loaded = scenarios.load_any(args.path)
    scenarios.write_items(loaded, Path(args.out))
    print(f"wrote {len(loaded)} records to {args.out}")
    return 0


def check_leakage(args) -> int:
    from tipping.cli import parse_args
    from tipping.config import Params
    from tipping.leakage import audit

    p = Params.from_files(args.params, *args.configfile)
    rows = audit(p, parse_args)
    for r in rows:
        upstream = ", ".join(f"{label} {n}" for label, n in r["upstream"]) or "none"
        print(
            f"{r['model']} {r['defence']} {r['testbed']} seed {r['seed']} round {r['round']}: {r['shared']} "
            f"shared of {r['eval_prompts']} evaluation prompts (upstream prompts: {upstream})"
        )
    leaks = [r for r in rows if r["shared"]]
    source = "+".join([args.params, *args.configfile])
    if leaks:
        print(
            f"LEAK: {len(leaks)} of {len(rows)} evaluated policies of {source} share evaluation prompts "
            "with their training or rollout data"
        )
        return 1
    print(f"ok: no evaluation prompt occurs upstream of any of the {len(rows)} evaluated policies of {source}")
    return 0
