"""What each Snakemake job is given: the `tipping` arguments built from the params (the policy spec,
sampling, protocol, condition, population grid), which items a job plays or trains on, and with
which seeds, and which jobs feed the policy an evaluation job plays.

The rules (workflow/rules/*.smk) put these lists into their shell commands, and the leakage
audit (tipping.leakage, `tipping items check`) reads the same lists, so the audit checks the
jobs' real arguments. Every built-in split is drawn with params `items_seed`, one value for the
whole DAG, so the generator's held-out rule (a train split avoids its evaluation split's prompts
of the same items seed) covers every pair of jobs; the replicates (`seeds`) seed sampling only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tipping import scenarios
from tipping.config import Params
from tipping.policies.models import MODEL_SHAPES

# A `tipping` command line -> the namespace its command reads (tipping.cli.parse_args). The leakage
# audit and the planner read the jobs' arguments with it; callers pass it in, so that they stay
# below the CLI in the import graph.
Parse = Callable[[list[str]], Any]


@dataclass(frozen=True)
class Job:
    """One job's `tipping` command words and the arguments that choose its items and seeds."""

    rule: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    round: int | None = None  # evolution round of a rollout

    @property
    def label(self) -> str:
        return self.rule if self.round is None else f"{self.rule} r{self.round}"


def _limit(limit: int | None) -> list[str]:
    return ["--limit", str(limit)] if limit else []


def policy_spec(p: Params, model: str, model_dir: str, adapter: str | None) -> str:
    """`--policy BACKEND:MODEL_DIR[@ADAPTER]`."""
    spec = f"{p.model_settings[model].backend}:{model_dir}"
    return f"{spec}@{adapter}" if adapter else spec


def sampling_args(p: Params, model: str, testbed: str) -> list[str]:
    """The model's sampling (the testbed's max_new_tokens first) and batch size."""
    ms = p.model_settings[model]
    s = ms.sampling
    max_new = getattr(p, testbed).max_new_tokens or s.max_new_tokens
    args = ["--temperature", str(s.temperature), "--top-p", str(s.top_p), "--max-new-tokens", str(max_new)]
    if s.top_k is not None:
        args += ["--top-k", str(s.top_k)]
    if s.enable_thinking is not None:
        args += ["--enable-thinking", "true" if s.enable_thinking else "false"]
    if ms.backend == "vllm":  # the engine's context; transformers needs none
        args += ["--max-model-len", str(ms.max_model_len or MODEL_SHAPES[model].context)]
    return args + ["--batch-size", str(ms.batch_size)]


def condition_args(p: Params, testbed: str, condition: str) -> list[str]:
    """What a control changes: no reward lines in the history, every round supervised, or the
    two answers listed in the reverse of the paper's order (position bias)."""
    feedback = "none" if condition == "control_no_feedback" else "reward"
    order = ["--option-order", "swapped"] if condition == "control_swapped" else []
    if testbed == "multi":
        return ["--feedback", feedback, *order]
    supervision = "all_supervised" if condition == "control_supervised" else p.single.supervision
    return ["--supervision", supervision, "--feedback", feedback, *order]


def testbed_args(p: Params, testbed: str, split: str | None = None, limit: int | None = None) -> list[str]:
    """The `tipping run single|multi` arguments of the paper's protocol (items, rounds, grid): on
    the evaluation split with its limit, or on `split` with `limit`. Multi items (multi-train)
    bring their own n, threshold and factors, so only games get the grid."""
    sec = getattr(p, testbed)
    if split is None:
        split, limit = p.eval_split(testbed), sec.limit
    if testbed == "single":
        args = ["--items", split, "--rounds", str(sec.rounds), "--window", str(sec.window)]
    else:
        args = ["--scenarios", split, "--rounds", str(sec.rounds), "--window", str(sec.window)]
        if scenarios.kind(split) == "multi-games":
            args += ["--agents", str(sec.agents), "--thresholds", ",".join(map(str, sec.thresholds))]
            for rs in sec.reward_sets:
                args += ["--reward-sets", ",".join(f"{x:g}" for x in rs)]
    return args + _limit(limit)


def population_args(p: Params, network_slug: str, agents, fraction) -> list[str]:
    """`tipping run population` arguments of one population job (its seed and policy aside)."""
    pop = p.population
    return [
        "--scenarios",
        pop.scenarios,
        *_limit(pop.limit),
        "--network",
        pop.network_of(network_slug),
        "--agents",
        str(agents),
        "--confederates",
        str(pop.confederates(int(agents), float(fraction))),
        "--payoff",
        pop.payoff,
        "--threshold-fractions",
        f"{pop.threshold_fraction:g}",
        "--reward-sets",
        ",".join(f"{x:g}" for x in pop.reward_set),
        "--rounds",
        str(pop.rounds),
        "--window",
        str(pop.window),
        "--items-seed",
        str(p.items_seed),
    ]


def population_probe_args(p: Params) -> list[str]:
    """`tipping population probe` arguments (its policy and sampling aside)."""
    pop = p.population
    return [
        "--scenarios",
        pop.scenarios,
        *_limit(pop.limit),
        "--degree",
        str(pop.probe_degree),
        "--threshold-fraction",
        f"{pop.threshold_fraction:g}",
        "--reward-set",
        ",".join(f"{x:g}" for x in pop.reward_set),
        "--window",
        str(pop.window),
    ]


def eval_args(p: Params, testbed: str, seed: int, condition: str) -> list[str]:
    """evaluate_policy: the evaluation split and protocol, the condition, the replicate's seed."""
    return [
        *testbed_args(p, testbed),
        *condition_args(p, testbed, condition),
        "--items-seed",
        str(p.items_seed),
        "--seed",
        str(seed),
    ]


def rollout_args(p: Params, testbed: str, seed: int, round: int) -> list[str]:
    """rollout_episodes of evolution round `round`: the train split (multi: its one-shot items, each
    played as its own game), the treatment, a rollout seed that no evaluation uses."""
    return [
        *testbed_args(p, testbed, split=p.train_split(testbed), limit=p.evolution.rollout.limit),
        *condition_args(p, testbed, "treatment"),
        "--items-seed",
        str(p.items_seed),
        "--seed",
        str(p.rollout_seed(seed, round)),
    ]


def pairs_args(p: Params, testbed: str) -> list[str]:
    """make_preference_pairs: the train split, sampled with dpo.seed."""
    return [
        "--items",
        p.train_split(testbed),
        *_limit(p.align.limit),
        "--items-seed",
        str(p.items_seed),
        "--seed",
        str(p.dpo.seed),
    ]


def grpo_items_args(p: Params, testbed: str) -> list[str]:
    """align_policy (grpo): the train split's prompts."""
    return ["--items", p.train_split(testbed), *_limit(p.align.limit), "--items-seed", str(p.items_seed)]


def eval_jobs(p: Params, testbed: str, seed: int) -> list[Job]:
    """The evaluate_policy jobs of one policy (one per condition; the round changes only the policy)."""
    return [
        Job("evaluate_policy", ("run", testbed), tuple(eval_args(p, testbed, seed, c))) for c in p.conditions(testbed)
    ]


def training_jobs(p: Params, defence: str, testbed: str, seed: int, round: int) -> list[Job]:
    """The jobs whose items trained the policy of evolution round `round`: the defence's alignment
    data (dpo: preference pairs, grpo: its prompts) and the rollouts of rounds 1..round (their kept
    turns are the fine-tuning data), as the rules chain them (paths.policy_adapter)."""
    jobs = []
    if defence == "dpo":
        jobs.append(Job("make_preference_pairs", ("align", "pairs"), tuple(pairs_args(p, testbed))))
    if defence == "grpo":
        jobs.append(Job("align_policy", ("align", "grpo"), tuple(grpo_items_args(p, testbed))))
    jobs += [
        Job("rollout_episodes", ("run", testbed), tuple(rollout_args(p, testbed, seed, r)), r)
        for r in range(1, round + 1)
    ]
    return jobs


def policies(p: Params) -> list[tuple[str, str, str, int, int]]:
    """(model, defence, testbed, seed, round) of every evaluated policy, in config order."""
    return [
        (m, d, t, s, r)
        for m in p.models
        for d in p.defences
        for t in p.testbeds
        for s in p.seeds
        for r in range(p.evolution.rounds + 1)
    ]
