"""Populations at scale: time per round and peak memory of `tipping run population` in choice mode.

For every model (tiny-qwen3, SmolLM2-135M-Instruct) x network (complete, small-world:k=6,p=0.1)
x N (8, 32, 128, 256, 1024): one game, one threshold, N/8 random confederates, R rounds, no
response cache, each configuration in a fresh subprocess (so its peak RSS is its own). Prints a
line per round on stderr as it goes (a stopped run still tells its rate), then one JSON object: a
row per configuration with s_per_round, s_each_round, turns_per_s, prompt_tokens_per_turn,
peak_rss_mb, and per model x network the slope of log(s_per_round) on log(turns per round) (1 =
linear; the target is <= 1). A complete graph's peers line lists all N agents, so its prompts
outgrow a small model's context above --complete-max agents; those rows say "skipped".

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python benchmarks/population.py                    # both models
    ... --models tiny-qwen3 --sizes 8,32,128,256,1024 --rounds 2
    ... --models smollm2-135m-instruct --networks 'small-world:k=6,p=0.1' --sizes 256 --rounds 10  # the target run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tipping.rollout import BATCH_SIZE

MODEL_CACHE = Path(os.environ.get("TIPPING_MODEL_CACHE", Path.home() / ".cache" / "tipping" / "models"))


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return round(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024, 1)


def one(model: str, network: str, agents: int, rounds: int, batch_size: int) -> dict:
    """Play one configuration in this process (the --one mode of the subprocesses)."""
    from tipping.cli import build_parser
    from tipping.policies import load_policy
    from tipping.policies.models import prepare
    from tipping.rollout import Engine
    from tipping.runs import population_plan

    path = prepare(model, MODEL_CACHE / model)
    args = build_parser().parse_args(
        [
            "run",
            "population",
            "--scenarios",
            "multi-games",
            "--limit",
            "1",
            "--threshold-fractions",
            "0.5",
            "--agents",
            str(agents),
            "--network",
            network,
            "--confederates",
            str(agents // 8),
            "--rounds",
            str(rounds),
            "--policy",
            f"transformers:{path}",
            "--decision",
            "choice",
            "--out",
            "unused",
        ]
    )
    episodes, _, _ = population_plan(args)
    policy = load_policy(args.policy)
    engine = Engine(policy, "choice", policy.default_sampling, cache=None, batch_size=batch_size, progress=False)
    seconds = []  # per round: the engine answers a round's turns in one call
    answer_round = engine.answer

    def timed(turns):
        started = time.perf_counter()
        answers = answer_round(turns)
        seconds.append(round(time.perf_counter() - started, 1))
        print(
            f"{model} {network} N={agents}: round {len(seconds)}/{rounds}, {len(turns)} turns, {seconds[-1]} s",
            file=sys.stderr,
            flush=True,
        )
        return answers

    engine.answer = timed
    started = time.perf_counter()
    engine.run(episodes)
    wall = time.perf_counter() - started
    policy.close()
    s = engine.stats
    return {
        "model": model,
        "network": network,
        "agents": agents,
        "rounds": rounds,
        "turns": s.turns,
        "s_per_round": round(wall / rounds, 3),
        "s_each_round": seconds,
        "turns_per_s": round(s.turns / wall, 2),
        "prompt_tokens_per_turn": round(s.prompt_tokens / max(1, s.turns), 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def slope(rows: list[dict]) -> float | None:
    """d log(s per round) / d log(turns per round) by least squares (numpy.polyfit)."""
    done = [r for r in rows if "s_per_round" in r and r["turns"]]
    if len(done) < 2:
        return None
    x = np.log([r["turns"] / r["rounds"] for r in done])
    y = np.log([r["s_per_round"] for r in done])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny-qwen3,smollm2-135m-instruct")
    parser.add_argument("--networks", default="complete;small-world:k=6,p=0.1", help="';'-separated --network SPECs")
    parser.add_argument("--sizes", default="8,32,128,256,1024")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--complete-max", type=int, default=128, help="largest N played on the complete graph")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per configuration")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "NETWORK", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], int(args.one[2]), args.rounds, args.batch_size)))
        return
    networks = args.networks.split(";")
    rows = []
    for model in args.models.split(","):
        for network in networks:
            for n in map(int, args.sizes.split(",")):
                row = {"model": model, "network": network, "agents": n}
                if network == "complete" and n > args.complete_max:
                    rows.append(
                        {
                            **row,
                            "skipped": f"complete graph above --complete-max {args.complete_max}: "
                            "its peers lines outgrow the context",
                        }
                    )
                    continue
                try:
                    done = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--one",
                            model,
                            network,
                            str(n),
                            "--rounds",
                            str(args.rounds),
                            "--batch-size",
                            str(args.batch_size),
                        ],
                        stdout=subprocess.PIPE,  # its stderr (a line per round) passes through
                        text=True,
                        timeout=args.timeout,
                    )
                    rows.append(
                        json.loads(done.stdout.splitlines()[-1])
                        if done.returncode == 0
                        else {**row, "failed": f"exit {done.returncode} (its stderr is above)"}
                    )
                except subprocess.TimeoutExpired:
                    rows.append({**row, "skipped": f"over --timeout {args.timeout} s"})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    slopes = {
        f"{m} {net}": slope([r for r in rows if r["model"] == m and r["network"] == net])
        for m in args.models.split(",")
        for net in networks
    }
    print(json.dumps({"rows": rows, "slope_log_time_per_round_vs_log_turns": slopes}, indent=2))


if __name__ == "__main__":
    main()
