"""`tipping align pairs|dpo|grpo|merge`: alignment defences (tipping.training)."""

from __future__ import annotations

from tipping.cli.options import (
    add_items_seed,
    add_policy_options,
    add_training_options,
    command,
    verbs,
)


def add(sub) -> None:
    align = verbs(sub, "align", "alignment defences: preference pairs, DPO, GRPO, merge")
    p = command(
        align,
        "pairs",
        pairs,
        "DPO pairs from the model itself: steered to keep and to break the rule, both answers validated",
    )
    p.add_argument("--items", required=True, help="single-train, multi-train, or an item file")
    p.add_argument("--out", required=True, help="pairs JSONL; OUT's .summary.json lists the failed items")
    p.add_argument("--tries", type=int, default=5, help="attempts per side before an item is dropped")
    p.add_argument("--parser", choices=("robust", "paper"), default="robust", help="how answers are validated")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    add_items_seed(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    add_policy_options(p)

    d = command(align, "dpo", dpo, "LoRA-DPO on preference pairs (TRL)")
    d.add_argument("--pairs", required=True, help="JSONL in TRL's conversational preference format")
    add_training_options(d, "dpo").add_argument("--beta", type=float, default=None)

    g = command(align, "grpo", grpo, "GRPO with the testbed's rule-based reward (TRL); LoRA unless grpo.full_parameter")
    g.add_argument("--items", required=True, help="single-train, multi-train, or an item file")
    add_items_seed(g)
    g.add_argument("--limit", type=int, default=None, help="only the first N items")
    g.add_argument("--parser", choices=("robust", "paper"), default="robust", help="how the reward reads answers")
    params = add_training_options(g, "grpo")
    params.add_argument("--beta", type=float, default=None, help="KL coefficient")
    params.add_argument("--num-generations", type=int, default=None, help="completions per prompt (G)")
    params.add_argument("--max-completion-length", type=int, default=None)

    m = command(align, "merge", merge, "merge an adapter into its base model")
    m.add_argument("--model", required=True)
    m.add_argument("--adapter", required=True)
    m.add_argument("--out", required=True)


def pairs(args) -> int:
    from pathlib import Path

    from tipping.cache import ResponseCache
    from tipping.cli.policy import parse_tags, policy_from_args, resolve_sampling
    from tipping.errors import InputError
    from tipping.training.pairs import load_prompts, make_pairs, summary_path

    if args.tries < 1:
        raise InputError(f"--tries must be >= 1, got {args.tries}")
    prompts = load_prompts(args.items, seed=args.items_seed)[: args.limit]
    policy = policy_from_args(args)
    try:
        sampling = resolve_sampling(policy, args)
        cache = ResponseCache(Path(args.cache_dir) if args.cache_dir else Path(args.out).with_suffix(".cache"))
        summary = make_pairs(
            prompts,
            policy,
            decision=args.decision,
            sampling=sampling,
            out=args.out,
            tries=args.tries,
            seed=args.seed,
            parser=args.parser,
            cache=cache,
            batch_size=args.batch_size,
            config={
                "items": args.items,
                "items_seed": args.items_seed,
                "limit": args.limit,
                "tags": parse_tags(args.tag),
            },
        )
    finally:
        policy.close()
    print(
        f"{summary['pairs']} pairs from {summary['items']} items ({len(summary['failed'])} failed); "
        f"wrote {args.out} and {summary_path(args.out)}"
    )
    return 0


def dpo(args) -> int:
    from tipping.cli.training import report, training_params
    from tipping.config import DPOParams
    from tipping.training.dpo import train_dpo

    params = training_params(DPOParams, args, "dpo")
    report(
        train_dpo(
            args.model,
            args.pairs,
            args.out,
            params,
            device=args.device,
            init_adapter=args.init_adapter,
            save_steps=args.save_steps,
        ),
        args.out,
    )
    return 0


def grpo(args) -> int:
    from tipping.cli.training import report, training_params
    from tipping.config import GRPOParams
    from tipping.training.grpo import PAPER_LR, train_grpo
    from tipping.training.pairs import load_prompts

    prompts = load_prompts(args.items, seed=args.items_seed)[: args.limit]
    testbed = prompts[0].testbed if prompts else "single"
    params = training_params(GRPOParams, args, "grpo", defaults={"learning_rate": PAPER_LR[testbed]})
    report(
        train_grpo(
            args.model,
            prompts,
            args.out,
            params,
            device=args.device,
            init_adapter=args.init_adapter,
            parser=args.parser,
            save_steps=args.save_steps,
            items=args.items,
        ),
        args.out,
    )
    return 0


def merge(args) -> int:
    from tipping.training.common import merge

    merge(args.model, args.adapter, args.out)
    print(f"wrote {args.out} ({args.model} + {args.adapter}, merged)")
    return 0
