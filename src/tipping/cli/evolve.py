"""`tipping evolve score|filter|finetune`: weight-level self-evolution (tipping.evolution, tipping.training)."""

from __future__ import annotations

from tipping.cli.options import add_training_options, command, verbs


def add(sub) -> None:
    evolve = verbs(sub, "evolve", "weight-level self-evolution: filter experience, fine-tune on it")
    sc = command(
        evolve,
        "score",
        score,
        "score a run's turns on a common scale (reward / the item's best payoff; multi: the round's return)",
    )
    sc.add_argument("--run", required=True, help="a finished `tipping run` folder")
    sc.add_argument("--out", required=True, help="scored turns JSONL")
    f = command(
        evolve, "filter", filter_turns, "keep a run's best-scored turns as SFT data (and reward-ranked DPO pairs)"
    )
    f.add_argument("--scored", required=True, help="output of `tipping evolve score`")
    f.add_argument("--rule", choices=("top_fraction", "above_mean", "threshold"), default="top_fraction")
    f.add_argument("--fraction", type=float, default=0.5, help="top_fraction: share of scored turns kept")
    f.add_argument("--threshold", type=float, default=None, help="threshold: minimum score kept")
    f.add_argument("--out", required=True, help="kept turns JSONL; a .summary.json is written next to it")
    f.add_argument("--pairs-out", default=None, help="also write reward-ranked DPO pairs here")

    t = command(
        evolve,
        "finetune",
        finetune,
        "fine-tune on kept turns (sft) or reward-ranked pairs (dpo), continuing the previous adapter",
    )
    t.add_argument("--data", required=True, help="sft: kept turns JSONL; dpo: pairs JSONL")
    t.add_argument("--method", choices=("sft", "dpo"), default="sft")
    add_training_options(t, "sft or dpo, per --method").add_argument(
        "--beta", type=float, default=None, help="dpo only"
    )


def score(args) -> int:
    from pathlib import Path

    from tipping.evolution import score_run
    from tipping.outputs import write_jsonl

    rows = score_run(args.run)
    write_jsonl(Path(args.out), rows)
    print(f"scored {sum(r['score'] is not None for r in rows)} of {len(rows)} turns; wrote {args.out}")
    return 0


def filter_turns(args) -> int:
    from tipping.evolution import filter_run

    s = filter_run(
        args.scored,
        args.out,
        rule=args.rule,
        fraction=args.fraction,
        threshold=args.threshold,
        pairs_out=args.pairs_out,
    )
    share = lambda x: "n/a" if x is None else f"{x:.1%}"  # noqa: E731
    print(
        f"kept {s['kept']['n']} of {s['valid']['n']} valid turns ({s['records']} records); deviant share "
        f"{share(s['kept']['deviant_share'])} kept vs {share(s['valid']['deviant_share'])} all; wrote {args.out}"
        + (f" and {s['pairs']['n']} pairs to {args.pairs_out}" if args.pairs_out else "")
    )
    return 0


def finetune(args) -> int:
    """--method sft on kept turns, or dpo on reward-ranked pairs."""
    from tipping.cli.training import report, training_params
    from tipping.config import DPOParams, SFTParams

    if args.method == "sft":
        from tipping.training.sft import train_sft

        result = train_sft(
            args.model,
            args.data,
            args.out,
            training_params(SFTParams, args, "sft"),
            device=args.device,
            init_adapter=args.init_adapter,
            save_steps=args.save_steps,
        )
    else:
        from tipping.training.dpo import train_dpo

        result = train_dpo(
            args.model,
            args.data,
            args.out,
            training_params(DPOParams, args, "dpo"),
            device=args.device,
            init_adapter=args.init_adapter,
            save_steps=args.save_steps,
        )
    if result.get("skipped_too_long"):
        print(
            f"sft: skipped {result['skipped_too_long']} kept turns longer than max_length "
            f"{result['params']['max_length']} tokens (train_config.json: skipped_too_long)"
        )
    report(result, args.out)
    return 0
