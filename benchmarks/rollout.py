"""The Engine at full speed vs upstream's one-request-at-a-time loop, on the embedded model.

SmolLM2-135M-Instruct on CPU plays one grid twice in one process with the same seeds, no
response cache (both runs compute every turn):
  fast      the Engine with batch_size 64; transformers: packed passes with prefix KV reuse
            (a round's chunks and answers batched; policies/packed.py)
  baseline  batch_size 1; transformers: prefix_cache=False (each prompt in one standard pass,
            one turn at a time: the per-turn loop)
Grids: single = the 64 single-test items x 6 rounds, window 5; multi = a subset of the paper's
test_ma grid (8 agents, 3 rounds, window 3): the first `--games` games x thresholds 2/4/6/8 x the
first `--reward-sets` reward sets (the full 7 x 4 x 5 grid is 3,360 turns: too slow to run twice
here). Prints one JSON object: both times, the speedup, peak RSS after each run, the fast run's
prefix-cache stats, and whether the records agree (choice: same decisions and the largest
|dP(deviant)|; generate: same text). Not a timed test; the full single grid takes tens of minutes:

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python benchmarks/rollout.py --decision choice
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python benchmarks/rollout.py --decision generate
    ... --testbed multi | --items 16 | --backend vllm | --no-baseline (the fast run alone)
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
from tipping.rollout import BATCH_SIZE, Engine
from tipping.runs import multi_episodes, single_episodes
from tipping.testbeds.multi import MultiSettings
from tipping.testbeds.single import SingleSettings
from tipping.turns import canonical_answer

MODEL_CACHE = Path(os.environ.get("TIPPING_MODEL_CACHE", Path.home() / ".cache" / "tipping" / "models"))
MODEL = "smollm2-135m-instruct"
THRESHOLDS = (2, 4, 6, 8)
REWARD_SETS = ((1.2, 1.0, 0.8), (1.2, 1.0, 0.2), (1.2, 1.0, 0.6), (1.4, 1.0, 0.8), (1.8, 1.0, 0.8))


def peak_rss_mb() -> float:
    """High-water RSS of this process plus its children (vLLM runs its engine in one)."""
    import psutil

    def hwm(pid: int) -> int:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    me = psutil.Process()
    return round(sum(hwm(p.pid) for p in [me, *me.children(recursive=True)]) / 1024, 1)


def current_rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def plan_bound(records: list[dict], args) -> dict:
    """The plan's memory bound for the fast run (tipping.plan.memory_bound_bytes in fp32, the CPU
    dtype: weights, the batch's KV at its longest prompt plus the new tokens, or two scored
    sequences a turn, and the prefix trie) over VLLM_MEMORY_SHARE (the plan leaves the rest to
    activations), in MB, against the peak RSS above the process's before the model loaded."""
    from tipping import plan

    longest = max(r["prompt_tokens"] for r in records)
    answer = plan.tokens(canonical_answer("comply")) + plan.TOKENS_PER_MESSAGE
    seqs, per_seq = (1, longest + args.max_new_tokens) if args.decision == "generate" else (2, longest + answer)
    trie = plan.trie_tokens(args.backend, args.batch_size, longest)
    bound = plan.memory_bound_bytes(MODEL, args.batch_size * seqs, per_seq, "float32", trie)
    return {"plan_bound_mb": round(bound / plan.VLLM_MEMORY_SHARE / 2**20, 1), "plan_trie_tokens": trie}


def episodes(args, rounds: int | None = None):
    """Fresh episodes every time: they keep their history."""
    if args.testbed == "single":
        items = scenarios.load_single_items("single-test")[: args.items]
        return single_episodes(items, SingleSettings(rounds=rounds or args.rounds, window=5), seed=0)
    games = scenarios.load_multi_games("multi-games")[: args.games]
    return multi_episodes(
        games, THRESHOLDS, REWARD_SETS[: args.reward_sets], MultiSettings(rounds=rounds or args.rounds), seed=0
    )


def play(policy, args, sampling, batch_size: int, rounds: int | None = None) -> tuple[list[dict], float, float]:
    """Records, wall seconds and CPU seconds (the machine is shared: CPU time is the steadier measure)."""
    engine = Engine(policy, args.decision, sampling, cache=None, batch_size=batch_size, progress=False)
    started, cpu = time.perf_counter(), time.process_time()
    records = engine.run(episodes(args, rounds))
    return records, time.perf_counter() - started, time.process_time() - cpu


def compare(fast: list[dict], base: list[dict], decision: str) -> dict:
    """The policy id names the prefill (chunked or not), so it is left out of the comparison."""

    def strip(r):
        return {k: v for k, v in r.items() if k != "policy"}

    same = [strip(a) == strip(b) for a, b in zip(fast, base)]
    result = {"records_identical": len(fast) == len(base) and all(same), "differing_records": same.count(False)}
    if decision == "choice":
        result["decisions_identical"] = [r["response"] for r in fast] == [r["response"] for r in base]
        result["max_abs_dp"] = max(abs(a["p_deviant"] - b["p_deviant"]) for a, b in zip(fast, base))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("transformers", "vllm"), default="transformers")
    parser.add_argument("--decision", choices=("choice", "generate"), default="generate")
    parser.add_argument("--testbed", choices=("single", "multi"), default="single")
    parser.add_argument("--items", type=int, default=64, help="single: test items (64 = the whole split)")
    parser.add_argument("--games", type=int, default=2, help="multi: games (7 = all)")
    parser.add_argument("--reward-sets", type=int, default=1, help="multi: reward sets (5 = all)")
    parser.add_argument("--rounds", type=int, help="default: 6 single, 3 multi")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--no-baseline", action="store_true", help="the fast run alone: its time, memory and prefix-cache hit rate"
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (6 if args.testbed == "single" else 3)

    import torch  # noqa: F401  (loaded before the baseline RSS: the bound is for the model's memory)
    import transformers  # noqa: F401

    rss_start = current_rss_mb()
    model = prepare(MODEL, MODEL_CACHE / MODEL)
    if args.backend == "transformers":
        from tipping.policies.transformers_backend import TransformersPolicy

        base_policy = TransformersPolicy(model, prefix_cache=False)
    else:
        base_policy = load_policy(f"vllm:{model}")
    sampling = replace(base_policy.default_sampling, max_new_tokens=args.max_new_tokens)
    play(base_policy, args, replace(sampling, max_new_tokens=1), 1, rounds=1)  # warm-up (no prefix cache here)
    if args.backend == "transformers":
        fast_policy = TransformersPolicy(model)  # after the warm-up: its prefix cache starts empty
    else:
        fast_policy = base_policy
        fast_policy.llm.reset_prefix_cache()
    before = fast_policy.prefix_cache_stats()  # vLLM counts over the engine's life: the warm-up's too

    fast, fast_s, fast_cpu = play(fast_policy, args, sampling, args.batch_size)
    stats, rss_fast = fast_policy.prefix_cache_stats(), peak_rss_mb()
    if args.backend == "vllm":
        stats = {k: v - before[k] for k, v in stats.items()}
        stats["hit_rate"] = round(stats["cached_tokens"] / max(1, stats["prompt_tokens"]), 4)
    result = {
        "backend": args.backend,
        "model": MODEL,
        "decision": args.decision,
        "testbed": args.testbed,
        "grid": (
            {"items": args.items}
            if args.testbed == "single"
            else {"games": args.games, "thresholds": THRESHOLDS, "reward_sets": args.reward_sets, "agents": 8}
        ),
        "rounds": args.rounds,
        "turns": len(fast),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens if args.decision == "generate" else None,
        "fast_s": round(fast_s, 2),
        "fast_cpu_s": round(fast_cpu, 2),
        "peak_rss_mb_after_fast": rss_fast,
        "rss_mb_before_model": rss_start,
        "prefix_cache": stats,
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in fast),
    }
    if args.backend == "transformers":  # vLLM's engine runs in its own process with its own budget
        result |= plan_bound(fast, args)
        result["within_plan_bound"] = rss_fast - rss_start <= result["plan_bound_mb"]
    if not args.no_baseline:
        if args.backend == "vllm":
            base_policy.llm.reset_prefix_cache()  # else the second run finds the first one's prompts cached
        base, base_s, base_cpu = play(base_policy, args, sampling, 1)
        result |= {
            "baseline_s": round(base_s, 2),
            "speedup": round(base_s / fast_s, 2),
            "baseline_cpu_s": round(base_cpu, 2),
            "cpu_speedup": round(base_cpu / fast_cpu, 2),
            "peak_rss_mb": peak_rss_mb(),
            **compare(fast, base, args.decision),
        }
    result["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    for policy in {id(p): p for p in (fast_policy, base_policy)}.values():
        policy.close()


if __name__ == "__main__":  # vLLM starts its engine with spawn
    main()
