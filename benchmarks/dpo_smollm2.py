"""Does the DPO defence work on the embedded model? SmolLM2-135M-Instruct on CPU, end to end.

    prepare SmolLM2 -> choice-mode pairs on single-train items -> LoRA-DPO (reduced schedule)
    -> `tipping run single --decision choice` on held-out single-test items, base vs adapter

Prints one JSON object: the violation rate of each policy with its Wilson 95% interval, the
difference with Newcombe's interval, the mean P(violate) with bootstrap intervals, the paired
round-1 difference in P(violate) (same prompts for both policies), and the wall times.
Items are spread over all 16 jobs (every k-th item of a split). Not a timed test:

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python benchmarks/dpo_smollm2.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

from tipping import metrics, scenarios
from tipping.cli import main as tipping
from tipping.outputs import read_jsonl
from tipping.policies import load_policy
from tipping.policies.models import prepare
from tipping.training.pairs import load_prompts, make_pairs


def run(argv: list[str]) -> None:
    with redirect_stdout(sys.stderr):  # the trainer prints its log per step; stdout holds only the result
        code = tipping(argv)
    if code:
        raise SystemExit(f"`tipping {' '.join(argv)}` exited {code}")


def spread(items: list, n: int) -> list:
    step = max(1, len(items) // n)
    return items[::step][:n]


def evaluate(policy: str, items: Path, out: Path, args) -> dict:
    run(
        [
            "run",
            "single",
            "--items",
            str(items),
            "--rounds",
            str(args.rounds),
            "--decision",
            "choice",
            "--temperature",
            "1.0",
            "--policy",
            policy,
            "--seed",
            str(args.seed),
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    records = read_jsonl(out / "records.jsonl")
    k, n = sum(bool(r["deviant"]) for r in records if r["valid"]), sum(r["valid"] for r in records)
    low, high = metrics.wilson(k, n)
    mean_p, p_low, p_high = metrics.bootstrap_mean(r["p_deviant"] for r in records)
    return {
        "violation_rate": k / n,
        "ci": [low, high],
        "k": k,
        "n": n,
        "mean_p_violate": mean_p,
        "mean_p_ci": [p_low, p_high],
        "p_round1": [r["p_deviant"] for r in records if r["round"] == 1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="results/bench/dpo_smollm2")
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=40, help="train items (pairs)")
    ap.add_argument("--test-items", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=1e-4, help="the paper's 5e-6 is for 12 epochs on 8B models")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work, wall = Path(args.work), {}

    t = time.perf_counter()
    model = str(prepare("smollm2-135m-instruct", args.model))
    wall["prepare_s"] = time.perf_counter() - t

    t = time.perf_counter()
    policy = load_policy(f"transformers:{model}")
    prompts = spread(load_prompts("single-train", seed=args.seed), args.pairs)
    make_pairs(
        prompts,
        policy,
        decision="choice",
        sampling=policy.default_sampling,
        out=work / "pairs.jsonl",
        seed=args.seed,
        config={"items": f"single-train, {len(prompts)} spread over the jobs"},
    )
    policy.close()
    wall["pairs_s"] = time.perf_counter() - t

    t = time.perf_counter()
    adapter = work / "adapter"
    run(
        [
            "align",
            "dpo",
            "--model",
            model,
            "--pairs",
            str(work / "pairs.jsonl"),
            "--out",
            str(adapter),
            "--epochs",
            str(args.epochs),
            "--lr",
            str(args.lr),
            "--seed",
            str(args.seed),
            "--save-steps",
            "0",
        ]
    )
    wall["dpo_s"] = time.perf_counter() - t
    log = [r for r in read_jsonl(adapter / "train_log.jsonl") if "loss" in r]

    test = work / "single-test.jsonl"
    scenarios.write_items(spread(scenarios.load_single_items("single-test", seed=args.seed), args.test_items), test)
    t = time.perf_counter()
    base = evaluate(f"transformers:{model}", test, work / "eval-base", args)
    wall["eval_base_s"] = time.perf_counter() - t
    t = time.perf_counter()
    dpo = evaluate(f"transformers:{model}@{adapter}", test, work / "eval-dpo", args)
    wall["eval_dpo_s"] = time.perf_counter() - t

    diff, d_low, d_high = metrics.newcombe(dpo["k"], dpo["n"], base["k"], base["n"])
    paired = [a - b for a, b in zip(dpo.pop("p_round1"), base.pop("p_round1"))]
    p_diff, p_low, p_high = metrics.bootstrap_mean(paired)
    print(
        json.dumps(
            {
                "model": "smollm2-135m-instruct",
                "device": "cpu",
                "train": {
                    "pairs": len(prompts),
                    "epochs": args.epochs,
                    "lr": args.lr,
                    "steps": log[-1]["step"],
                    "first_loss": log[0]["loss"],
                    "last_loss": log[-1]["loss"],
                    "last_reward_margin": log[-1]["rewards/margins"],
                },
                "eval": {"items": args.test_items, "rounds": args.rounds, "decision": "choice", "temperature": 1.0},
                "base": base,
                "dpo": dpo,
                "violation_rate_difference": {"dpo_minus_base": diff, "ci": [d_low, d_high]},
                "paired_round1_p_violate_difference": {"mean": p_diff, "ci": [p_low, p_high], "n": len(paired)},
                "wall_s": {k: round(v, 1) for k, v in wall.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
