"""The leakage audit (`tipping items check`): no evaluation prompt occurs in the training data.

For every evaluated policy of the DAG the params produce (model, defence, testbed, seed,
evolution round), the audit takes its evaluation jobs and the jobs whose items trained it
(tipping.pipeline: the defence's alignment pairs or GRPO prompts, and the rollouts of every
evolution round before it), parses each job's real arguments with the command's own parser
(`parse`: tipping.cli.parse_args, passed in by the caller so that this module stays below the CLI),
loads the items that command would load (same split, items seed and limit, through the same
functions) and counts the evaluation prompts that also occur upstream. Any shared prompt -> exit 1.

What counts as one prompt:
  single  the item's user prompt (its job and payoffs);
  multi   the game as the agents are asked it (system prompt + round question), and the decision
          problem itself (game, n, threshold, factors), so that a one-shot training item with the
          same numbers as an evaluation cell counts as shared although its wording differs.
"""

from __future__ import annotations

import os

from tipping import pipeline, scenarios
from tipping.config import Params
from tipping.errors import InputError
from tipping.scenarios.models import MultiItem, SingleItem

# what a command requires besides the arguments that choose its items: placeholders, so that the
# command's own parser reads the job's arguments exactly as the job will
_POLICY = ["--policy", "scripted:comply", "--out", os.devnull]
_REQUIRED = {
    ("run", "single"): _POLICY,
    ("run", "multi"): _POLICY,
    ("align", "pairs"): _POLICY,
    ("align", "grpo"): ["--model", os.devnull, "--out", os.devnull],
}


def parse_job(job: pipeline.Job, parse: pipeline.Parse):
    """The job's arguments as its command reads them."""
    return parse([*job.command, *job.args, *_REQUIRED[job.command]])


def decision_problem(scenario: str, n: int, threshold: int, rewards) -> str:
    return f"{scenario}: n={n} threshold={threshold} factors={'/'.join(f'{float(x):g}' for x in rewards)}"


def item_prompts(item) -> set[str]:
    if isinstance(item, SingleItem):
        return {item.user_prompt}
    p = item.params
    return {
        item.user_prompt,
        decision_problem(item.scenario, p.n, p.cooperation_threshold, (p.high_reward, p.normal_reward, p.low_reward)),
    }


def episode_prompts(episode) -> set[str]:
    if episode.testbed == "single":
        return item_prompts(episode.item)
    return {
        f"{episode.system_prompt}\n{episode.question}",
        decision_problem(episode.scenario, episode.settings.agents, episode.threshold, episode.rewards),
    }


def job_prompts(job: pipeline.Job, parse: pipeline.Parse) -> list[frozenset[str]]:
    """The prompts of every item or episode the job plays or trains on (one set per unit)."""
    from tipping.runs import multi_plan, single_plan

    args = parse_job(job, parse)
    if job.command[0] == "align":  # pairs and GRPO train on the items load_prompts reads
        units = scenarios.load_any(args.items, args.items_seed)[: args.limit]
        if not all(isinstance(u, (SingleItem, MultiItem)) for u in units):
            raise InputError(f"{args.items}: holds games, not items; alignment trains on items")
        return [frozenset(item_prompts(u)) for u in units]
    episodes, _ = (single_plan if job.command[1] == "single" else multi_plan)(args)
    return [frozenset(episode_prompts(e)) for e in episodes]


def audit(p: Params, parse: pipeline.Parse) -> list[dict]:
    """One row per evaluated policy: its evaluation prompts, the jobs upstream of it and how many
    of its evaluation prompts occur in them."""
    cache: dict[pipeline.Job, list[frozenset[str]]] = {}

    def units(job: pipeline.Job) -> list[frozenset[str]]:
        if job not in cache:
            cache[job] = job_prompts(job, parse)
        return cache[job]

    rows = []
    for model, defence, testbed, seed, round in pipeline.policies(p):
        upstream = pipeline.training_jobs(p, defence, testbed, seed, round)
        evaluated = set().union(*(units(j) for j in pipeline.eval_jobs(p, testbed, seed)))
        trained = set().union(*(u for j in upstream for u in units(j)))
        rows.append(
            {
                "model": model,
                "defence": defence,
                "testbed": testbed,
                "seed": seed,
                "round": round,
                "eval_prompts": len(evaluated),
                "shared": sum(bool(u & trained) for u in evaluated),
                "upstream": [(j.label, len(units(j))) for j in upstream],
            }
        )
    return rows
