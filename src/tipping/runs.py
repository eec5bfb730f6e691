"""One run of a testbed: items -> episodes -> rollout -> records, metrics and provenance.

The output folder is the contract later steps rely on (tipping.records writes it): records.jsonl,
prompts.jsonl, metrics.json (per-round rates with 95% intervals; deterministic: same records, same
file), run.json (the resolved config, package versions and throughput: turns/s, cache hits) and, for
population runs, network.edgelist.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from tipping import metrics
from tipping.cache import ResponseCache
from tipping.outputs import output_lock, versions
from tipping.paths import METRICS_JSON, RECORDS_JSONL
from tipping.policies import Policy, Sampling
from tipping.records import unfinish, write_run
from tipping.rollout import Decision, Engine
from tipping.scenarios.models import MultiItem, MultiScenario, SingleItem
from tipping.testbeds.multi import MultiEpisode, MultiSettings
from tipping.testbeds.single import SingleEpisode, SingleSettings


def single_episodes(items: Sequence[SingleItem], settings: SingleSettings, seed: int) -> list[SingleEpisode]:
    return [SingleEpisode(item, settings, seed) for item in items]


def multi_episodes(games: Sequence[MultiScenario], thresholds: Sequence[int],
                   reward_sets: Sequence[tuple[float, float, float]], settings: MultiSettings,
                   seed: int) -> list[MultiEpisode]:
    """The paper's grid: every threshold x reward set x game is one episode."""
    return [MultiEpisode(game, t, rewards, settings, seed)
            for t in thresholds for rewards in reward_sets for game in games]


def multi_item_episodes(items: Sequence[MultiItem], settings: MultiSettings, seed: int) -> list[MultiEpisode]:
    """Every item is one episode of its own game (its n, threshold and reward factors)."""
    return [MultiEpisode.from_item(item, settings, seed) for item in items]


def execute(episodes: Sequence, policy: Policy, *, decision: Decision, sampling: Sampling, out: Path,
            config: dict, cache_dir: Path | None = None, batch_size: int = 64, progress: bool = True,
            files: dict[str, str] | None = None) -> dict:
    """Play the episodes and write the output folder (with `files`: name -> text); returns
    metrics.json's content."""
    out = Path(out)
    with output_lock(out):
        unfinish(out)
        cache = ResponseCache(Path(cache_dir) if cache_dir else out / "cache")
        engine = Engine(policy, decision, sampling, cache=cache, batch_size=batch_size, progress=progress)
        records = engine.run(episodes)
        result = metrics.single_metrics(records) if config["testbed"] == "single" else metrics.multi_metrics(records)
        result["prompt_tokens"] = sum(r["prompt_tokens"] for r in records)
        result["completion_tokens"] = sum(r["completion_tokens"] for r in records)
        result["turns"] = len(records)
        write_run(out, records, engine.prompts,
                  {"config": {**config, "policy": policy.id, "decision": decision, "sampling": asdict(sampling)},
                   "versions": versions(), "stats": engine.stats.to_dict()},
                  result, files)
        s = engine.stats
        print(f"{len(records)} turns, {s.model_calls} model calls, {s.cache_hits} cache hits"
              f"{' (nothing recomputed)' if s.model_calls == 0 else ''}; wrote {out}/{RECORDS_JSONL}, {METRICS_JSON}")
        return result
