"""`tipping plan`: the DAG's size and memory before running it (tipping.plan)."""

from __future__ import annotations

from tipping.cli.options import command


def add(sub) -> None:
    p = command(
        sub,
        "plan",
        plan,
        "estimate the DAG before running it: per rule, turns, prompt and new tokens, KV-cache memory at "
        "the configured batch, the batch that fits, GPU-hours at an assumed throughput",
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument(
        "--configfile",
        action="append",
        default=[],
        metavar="OVERLAY",
        help="overlays merged on top, as `snakemake --configfile` does (repeatable)",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="NAME",
        help="the site of Snakemake profile workflow/profiles/NAME: its `config:` key "
        "(runtime.gpu_memory_gb, runtime.throughput) applies on top of the params, as under `snakemake --profile`",
    )
    p.add_argument(
        "--gpu-memory",
        type=float,
        default=None,
        metavar="GIB",
        help="GPU memory per job (default: runtime.gpu_memory_gb, else 80)",
    )
    p.add_argument(
        "--throughput",
        action="append",
        default=[],
        metavar="CLASS=DECODE,PREFILL",
        help="tokens/s of one GPU for a model size class (<1B, 1-10B), e.g. 1-10B=1500,10000 "
        "(default: runtime.throughput, else the built-in table)",
    )
    p.add_argument("--json", action="store_true", help="the estimate as JSON")


def plan(args) -> int:
    import json

    from tipping.cli import parse_args
    from tipping.config import Params
    from tipping.plan import estimate, parse_throughput, profile_config, render, site

    overrides = profile_config(args.profile) if args.profile else {}
    p = Params.from_files(args.params, *args.configfile, overrides=overrides)
    gpu, throughput = site(p)
    result = estimate(p, args.gpu_memory or gpu, parse_throughput(args.throughput, base=throughput), parse=parse_args)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0
