"""Round-synchronous batching vs the upstream one-request-at-a-time loop, on the embedded model.

The single-agent grid (window 5, 64 new tokens, free generation) with SmolLM2-135M-Instruct on
CPU, played twice in one process with the same seeds: the Engine with batch_size 64 (every
episode's turn of a round in one call) and with batch_size 1 (upstream's loop). No response
cache, so both runs compute every turn. Prints one JSON object:

    {batched_s, sequential_s, speedup, peak_rss_mb, turns_per_s, prompt_tokens, new_tokens, identical, ...}

`identical` says whether both runs wrote the same records. Not a timed test; the full grid is slow:

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python benchmarks/rollout.py               # 16 items x 6 rounds
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python benchmarks/rollout.py --items 64    # the full split
    ... --backend vllm                                                                   # the vLLM engine
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from tipping import scenarios
from tipping.policies import load_policy
from tipping.policies.models import prepare
from tipping.rollout import Engine
from tipping.runs import single_episodes
from tipping.testbeds.single import SingleSettings

MODEL_CACHE = Path(os.environ.get("TIPPING_MODEL_CACHE", Path.home() / ".cache" / "tipping" / "models"))


def peak_rss_mb() -> float:
    """High-water RSS of this process plus its children (vLLM runs its engine in one)."""
    import psutil

    def hwm(pid: int) -> int:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    me = psutil.Process()
    return round(sum(hwm(p.pid) for p in [me, *me.children(recursive=True)]) / 1024, 1)


def play(policy, sampling, items, settings, batch_size: int) -> tuple[list[dict], Engine, float]:
    engine = Engine(policy, "generate", sampling, cache=None, batch_size=batch_size, progress=False)
    started = time.perf_counter()
    records = engine.run(single_episodes(items, settings, seed=0))  # fresh episodes: they keep history
    return records, engine, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("transformers", "vllm"), default="transformers")
    parser.add_argument("--items", type=int, default=16, help="single-test items (64 = the whole split)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    model = prepare("smollm2-135m-instruct", MODEL_CACHE / "smollm2-135m-instruct")
    policy = load_policy(f"{args.backend}:{model}")
    sampling = replace(policy.default_sampling, max_new_tokens=args.max_new_tokens)
    items = scenarios.load_single_items("single-test")[: args.items]
    settings = SingleSettings(rounds=args.rounds, window=5)
    play(policy, replace(sampling, max_new_tokens=1), items[:1], replace(settings, rounds=1), 1)  # warm-up

    batched, fast, batched_s = play(policy, sampling, items, settings, args.batch_size)
    if args.backend == "vllm":
        policy.llm.reset_prefix_cache()  # else the second run finds the first one's prompts cached
    sequential, _, sequential_s = play(policy, sampling, items, settings, 1)
    rss = peak_rss_mb()
    policy.close()
    stats = fast.stats
    print(json.dumps({
        "backend": args.backend, "model": "smollm2-135m-instruct", "items": len(items), "rounds": args.rounds,
        "turns": stats.turns, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "batched_s": round(batched_s, 2), "sequential_s": round(sequential_s, 2),
        "speedup": round(sequential_s / batched_s, 2), "peak_rss_mb": rss,
        "turns_per_s": round(stats.turns / batched_s, 3), "prompt_tokens": stats.prompt_tokens,
        "new_tokens": stats.completion_tokens, "identical": batched == sequential,
        "differing_records": sum(a != b for a, b in zip(batched, sequential)),
    }, indent=2))


if __name__ == "__main__":  # vLLM starts its engine with spawn
    main()
