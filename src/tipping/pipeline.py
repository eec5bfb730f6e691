"""What each Snakemake job is given: the `tipping` arguments that decide which items a job plays or
trains on, and with which seeds, and which jobs feed the policy an evaluation job plays.

The rules (workflow/rules/*.smk) put these lists into their shell commands, and the leakage
audit (tipping.leakage, `tipping items check`) reads the same lists, so the audit checks the
jobs' real arguments. Every built-in split is drawn with params `items_seed`, one value for the
whole DAG, so the generator's held-out rule (a train split avoids its evaluation split's prompts
of the same items seed) covers every pair of jobs; the replicates (`seeds`) seed sampling only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tipping.config import Params


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


def eval_args(p: Params, testbed: str, seed: int, condition: str) -> list[str]:
    """evaluate_policy: the evaluation split and protocol, the condition, the replicate's seed."""
    return [*p.testbed_args(testbed), *p.condition_args(testbed, condition),
            "--items-seed", str(p.items_seed), "--seed", str(seed)]


def rollout_args(p: Params, testbed: str, seed: int, round: int) -> list[str]:
    """rollout_episodes of evolution round `round`: the train split (multi: its one-shot items, each
    played as its own game), the treatment, a rollout seed that no evaluation uses."""
    return [*p.testbed_args(testbed, split=p.train_split(testbed), limit=p.evolution.rollout.limit),
            *p.condition_args(testbed, "treatment"),
            "--items-seed", str(p.items_seed), "--seed", str(p.rollout_seed(seed, round))]


def pairs_args(p: Params, testbed: str) -> list[str]:
    """make_preference_pairs: the train split, sampled with dpo.seed."""
    return ["--items", p.train_split(testbed), *_limit(p.align.limit), "--items-seed", str(p.items_seed),
            "--seed", str(p.dpo.seed)]


def grpo_items_args(p: Params, testbed: str) -> list[str]:
    """align_policy (grpo): the train split's prompts."""
    return ["--items", p.train_split(testbed), *_limit(p.align.limit), "--items-seed", str(p.items_seed)]


def eval_jobs(p: Params, testbed: str, seed: int) -> list[Job]:
    """The evaluate_policy jobs of one policy (one per condition; the round changes only the policy)."""
    return [Job("evaluate_policy", ("run", testbed), tuple(eval_args(p, testbed, seed, c)))
            for c in p.conditions(testbed)]


def training_jobs(p: Params, defence: str, testbed: str, seed: int, round: int) -> list[Job]:
    """The jobs whose items trained the policy of evolution round `round`: the defence's alignment
    data (dpo: preference pairs, grpo: its prompts) and the rollouts of rounds 1..round (their kept
    turns are the fine-tuning data), as the rules chain them (paths.policy_adapter)."""
    jobs = []
    if defence == "dpo":
        jobs.append(Job("make_preference_pairs", ("align", "pairs"), tuple(pairs_args(p, testbed))))
    if defence == "grpo":
        jobs.append(Job("align_policy", ("align", "grpo"), tuple(grpo_items_args(p, testbed))))
    jobs += [Job("rollout_episodes", ("run", testbed), tuple(rollout_args(p, testbed, seed, r)), r)
             for r in range(1, round + 1)]
    return jobs


def policies(p: Params) -> list[tuple[str, str, str, int, int]]:
    """(model, defence, testbed, seed, round) of every evaluated policy, in config order."""
    return [(m, d, t, s, r) for m in p.models for d in p.defences for t in p.testbeds for s in p.seeds
            for r in range(p.evolution.rounds + 1)]
