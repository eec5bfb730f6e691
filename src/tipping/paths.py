"""Every artifact path of the pipeline, one function each (used by the Snakefile's rules and by code).

Wildcards always come in this order (the same in every path, every rule, every log):

    model / defence / testbed / seed / round / condition        (+ figure, section for their rules)

Each function returns a concrete path when given values, and the Snakemake pattern when the
defaults (the "{wildcard}" placeholders) are left in place, so a rule's output and the code that
reads it can never disagree. `root` is params.yaml's `results` (results/paper, results/demo, ...).
No timestamps: the same parameters always name the same files.

    {root}/models/{model}/                                          prepare_model
    {root}/params/{section}/{model}/{testbed}.yaml                  write_training_params
    {root}/align/{model}/dpo/{testbed}/pairs.jsonl (+ .summary.json)  make_preference_pairs
    {root}/align/{model}/{defence}/{testbed}/adapter/               align_policy
    {root}/rollouts/{model}/{defence}/{testbed}/s{seed}/r{round}/   rollout_episodes   (a run folder)
    {root}/rewards/{model}/{defence}/{testbed}/s{seed}/r{round}/scored.jsonl   score_rewards
    {root}/filtered/{model}/{defence}/{testbed}/s{seed}/r{round}/kept.jsonl    filter_trajectories
                                                          (+ kept.summary.json)
                                                          (+ pairs.jsonl: reward-ranked DPO pairs)
    {root}/adapters/{model}/{defence}/{testbed}/s{seed}/r{round}/   finetune_policy
    {root}/evals/{model}/{defence}/{testbed}/s{seed}/r{round}/{condition}/     evaluate_policy (a run folder)
    {root}/population/{model}/runs/{network}/n{agents}/f{fraction}/{placement}/s{seed}/  population_run (a run
                                                          folder + network.edgelist)
    {root}/population/{model}/response.json                        population_probe
    {root}/population_report/{model}/ (summary.json, tables, figures)  population_report (DVC: git-carried)
    {root}/tables/{TABLE_FILES}                                     aggregate
    {root}/figures/{figure}.png|.pdf                                plot_figure
    {root}/viewer/index.html                                        build_viewer
    {root}/cache/{model}/                                           response cache (not an output)
    {root}/logs/{rule}/...log, {root}/benchmarks/{rule}/...tsv      per job
"""

from __future__ import annotations

import os

WILDCARDS = ("model", "defence", "testbed", "seed", "round", "condition")

# A run folder (tipping.records writes and reads it): metrics.json is written last, so its presence
# means "complete". A population run also holds the graph its agents played on (EDGE_LIST).
RECORDS_JSONL, PROMPTS_JSONL, RUN_JSON, METRICS_JSON = "records.jsonl", "prompts.jsonl", "run.json", "metrics.json"
RUN_FILES = (RECORDS_JSONL, PROMPTS_JSONL, RUN_JSON, METRICS_JSON)
EDGE_LIST = "network.edgelist"
# Everything `tipping tables` writes (tipping.analysis.tables writes exactly these, by name; a .md
# is the same-named table with its note; summary.json and plot_rates.csv are DVC's metrics/plots).
# ROW_TABLES: every turn, prompt and message (the viewer reads these).
ROW_TABLES = ("records.parquet", "prompts.parquet", "messages.parquet")
TABLE_FILES = (
    *ROW_TABLES,
    "rates.csv",
    "effects.csv",
    "tipping_rounds.csv",
    "evolution.csv",
    "scenario_rates.csv",
    "payoff.csv",
    "paper_comparison.csv",
    "plot_rates.csv",
    "rates.md",
    "effects.md",
    "tipping_rounds.md",
    "paper_comparison.md",
    "summary.json",
)

M, D, T, S, R, C = "{model}", "{defence}", "{testbed}", "{seed}", "{round}", "{condition}"


def _chain(model, defence, testbed, seed, round) -> str:
    return f"{model}/{defence}/{testbed}/s{seed}/r{round}"


def model_dir(root: str, model: str = M) -> str:
    return f"{root}/models/{model}"


def training_params(root: str, section: str = "{section}", model: str = M, testbed: str = T) -> str:
    """The resolved dpo/grpo/sft section (overrides applied) that a training command reads."""
    return f"{root}/params/{section}/{model}/{testbed}.yaml"


def preference_pairs(root: str, model: str = M, testbed: str = T) -> str:
    return f"{root}/align/{model}/dpo/{testbed}/pairs.jsonl"


def aligned_adapter(root: str, model: str = M, defence: str = D, testbed: str = T) -> str:
    return f"{root}/align/{model}/{defence}/{testbed}/adapter"


def rollout_run(root: str, model: str = M, defence: str = D, testbed: str = T, seed=S, round=R) -> str:
    """Round r's rollout: the policy of round r-1 plays the train split."""
    return f"{root}/rollouts/{_chain(model, defence, testbed, seed, round)}"


def scored(root: str, model: str = M, defence: str = D, testbed: str = T, seed=S, round=R) -> str:
    return f"{root}/rewards/{_chain(model, defence, testbed, seed, round)}/scored.jsonl"


def kept(root: str, model: str = M, defence: str = D, testbed: str = T, seed=S, round=R) -> str:
    return f"{root}/filtered/{_chain(model, defence, testbed, seed, round)}/kept.jsonl"


def summary_path(out) -> str:
    """The summary written beside a JSONL output: pairs.jsonl -> pairs.summary.json (kept.jsonl too)."""
    return f"{os.path.splitext(str(out))[0]}.summary.json"


def ranked_pairs(root: str, model: str = M, defence: str = D, testbed: str = T, seed=S, round=R) -> str:
    """Reward-ranked DPO pairs of a round (only when evolution.finetune.method is dpo)."""
    return f"{root}/filtered/{_chain(model, defence, testbed, seed, round)}/pairs.jsonl"


def evolved_adapter(root: str, model: str = M, defence: str = D, testbed: str = T, seed=S, round=R) -> str:
    """The LoRA adapter of evolution round r (r >= 1), continued from round r-1's."""
    return f"{root}/adapters/{_chain(model, defence, testbed, seed, round)}"


def policy_adapter(root: str, model: str, defence: str, testbed: str, seed, round) -> str | None:
    """The adapter that makes up the policy of evolution round `round` (None: the base model)."""
    if int(round) >= 1:
        return evolved_adapter(root, model, defence, testbed, seed, round)
    return None if defence == "none" else aligned_adapter(root, model, defence, testbed)


def eval_run(root: str, model: str = M, defence: str = D, testbed: str = T, seed=S, round=R, condition: str = C) -> str:
    return f"{root}/evals/{_chain(model, defence, testbed, seed, round)}/{condition}"


def run_file(run_dir: str, name: str) -> str:
    if name not in RUN_FILES:
        raise ValueError(f"{name!r} is not a run file; expected one of {RUN_FILES}")
    return f"{run_dir}/{name}"


def run_files(run_dir: str) -> dict[str, str]:
    """A run folder's files by short name (records, prompts, run, metrics)."""
    return {name.split(".")[0]: f"{run_dir}/{name}" for name in RUN_FILES}


def population_run(
    root: str,
    model: str = M,
    network: str = "{network}",
    agents="{agents}",
    fraction="{fraction}",
    placement: str = "{placement}",
    seed=S,
) -> str:
    """One population job; `network` is PopulationParams.slug of its SPEC."""
    return f"{root}/population/{model}/runs/{network}/n{agents}/f{fraction}/{placement}/s{seed}"


def population_edges(run_dir: str) -> str:
    """The graph a population run played on (tipping.records writes it beside the run files)."""
    return f"{run_dir}/{EDGE_LIST}"


def population_probe(root: str, model: str = M) -> str:
    return f"{root}/population/{model}/response.json"


def population_report(root: str, model: str = M) -> str:
    """The report folder: its tables, summary.json and figures depend on the grid (a prediction with
    a response, per-group tables for mixed populations), so the rule declares the folder."""
    return f"{root}/population_report/{model}"


def tables_dir(root: str) -> str:
    return f"{root}/tables"


def table(root: str, name: str) -> str:
    if name not in TABLE_FILES:
        raise ValueError(f"{name!r} is not a table; expected one of {TABLE_FILES}")
    return f"{tables_dir(root)}/{name}"


def figure(root: str, figure: str = "{figure}", ext: str = "png") -> str:
    return f"{root}/figures/{figure}.{ext}"


def viewer(root: str) -> str:
    return f"{root}/viewer/index.html"


def response_cache(root: str, model: str = M) -> str:
    """Content-addressed response cache shared by a model's runs (keys include the adapter's hash)."""
    return f"{root}/cache/{model}"


def log(root: str, rule: str, stem: str) -> str:
    return f"{root}/logs/{rule}/{stem}.log"


def benchmark(root: str, rule: str, stem: str) -> str:
    return f"{root}/benchmarks/{rule}/{stem}.tsv"


def chain_stem(model: str = M, defence: str = D, testbed: str = T, seed=S, round=R) -> str:
    """A flat name for logs: model_defence_testbed_sS_rR."""
    return f"{model}_{defence}_{testbed}_s{seed}_r{round}"


# the figures `tipping plot` draws, in the paper's order (tipping.analysis.plots draws each; the CLI lists them)
FIGURES = (
    "single_rounds",
    "tipping_effect",
    "multi_rounds",
    "multi_heatmap",
    "evolution",
    "per_scenario",
    "payoff_ratio",
    "invalid_rate",
)
