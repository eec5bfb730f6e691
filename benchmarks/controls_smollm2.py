"""The README's "Controls (beyond the paper)" numbers: SmolLM2-135M-Instruct's in-context drift
under the treatment and its two controls, and the tipping effect against each.

    tipping model prepare smollm2-135m-instruct
    -> tipping run single (single-test, choice mode, T = 1, seed 0) three times:
         treatment (violations pay more), --feedback none, --supervision all_supervised
    -> tipping compare treatment CONTROL, for each control

Prints one table: per round, the mean P(violate) and the violation rate of each run, and the
treatment-minus-control difference in violation rate with compare's 95% interval. The README's
numbers are the full size (64 items x 6 rounds, about 20 min on 2 CPU cores):

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python benchmarks/controls_smollm2.py
    ... --items 2 --rounds 2        # a quick check that it runs
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

from tipping.cli import main as tipping

RUNS = {"treatment": [], "no_feedback": ["--feedback", "none"], "all_supervised": ["--supervision", "all_supervised"]}
CONTROLS = ("no_feedback", "all_supervised")


def run(argv: list[str]) -> None:
    with redirect_stdout(sys.stderr):  # stdout holds only the table
        code = tipping(argv)
    if code:
        raise SystemExit(f"`tipping {' '.join(argv)}` exited {code}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="results/bench/controls_smollm2")
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--items", type=int, default=64, help="the first N single-test items")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(args.work)

    run(["model", "prepare", "smollm2-135m-instruct", "--out", args.model])
    for name, extra in RUNS.items():
        run(
            [
                "run",
                "single",
                "--items",
                "single-test",
                "--limit",
                str(args.items),
                "--rounds",
                str(args.rounds),
                "--decision",
                "choice",
                "--temperature",
                "1.0",
                "--seed",
                str(args.seed),
                "--policy",
                f"transformers:{args.model}",
                "--cache-dir",
                str(work / "cache"),
                "--no-progress",
                *extra,
                "--out",
                str(work / name),
            ]
        )
    for control in CONTROLS:
        run(["compare", str(work / "treatment"), str(work / control), "--out", str(work / f"effect-{control}")])

    rates = {name: json.loads((work / name / "metrics.json").read_text()) for name in RUNS}
    effects = {
        c: {row["round"]: row for row in json.loads((work / f"effect-{c}" / "effect.json").read_text())["rounds"]}
        for c in CONTROLS
    }
    print(
        f"SmolLM2-135M-Instruct, single-test first {args.items} items, {args.rounds} rounds, choice mode, "
        f"T = 1, seed {args.seed}"
    )
    print(
        "round | mean P(violate): treatment no_feedback all_supervised | violation rate: same order | "
        "treatment - no_feedback [95% CI] | treatment - all_supervised [95% CI]"
    )
    for i, r in enumerate(rates["treatment"]["rounds"]):
        cells = [
            f"{r:5d}",
            " ".join(f"{rates[n]['mean_p_deviant'][i]:.2f}" for n in RUNS),
            " ".join(f"{rates[n]['violation_rate'][i]:.2f}" for n in RUNS),
        ]
        cells += [
            f"{e['difference']:+.2f} [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]"
            for e in (effects[c][r] for c in CONTROLS)
        ]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
