"""Alignment Tipping Process: the paper's experiment as one DAG (see params.yaml, DESIGN.md §2).

    prepare_model -> [make_preference_pairs ->] align_policy (defence none|dpo|grpo)
      -> round 0: evaluate_policy (the aligned policy, every condition)
      -> for r = 1..evolution.rounds:
           rollout_episodes (policy r-1 plays the train split, in-context history)
           -> score_rewards -> filter_trajectories (keep the high-reward turns)
           -> finetune_policy (LoRA continued from round r-1's adapter)
           -> evaluate_policy (policy r: single-test protocol / multi grid, with controls)
      -> aggregate (tables) -> plot_<figure> (one rule per figure) + build_viewer; `snakemake --report`

Wildcards, always in this order (paths, rules, logs; src/tipping/paths.py):

    model / defence / testbed / seed / round / condition

Rules call `python -m tipping ...` (no science here); every value reaches a shell command through
`params:` so changing it reruns exactly the jobs it affects. Run with the venv active:
    snakemake --profile local all                            # this machine
    snakemake --configfile config/demo.yaml --profile local  # the CPU demo (results/demo)
    snakemake --profile slurm all                            # a SLURM cluster with GPUs (make setup)
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


# common.smk validates the merged config (tipping.config.Params) before any rule exists, and
# holds the helpers; every other file holds rules only.
include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/align.smk"
# evaluate.smk before evolve.smk: rollout_episodes reuses the rule evaluate_policy
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/evolve.smk"
include: "workflow/rules/population.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        final_targets(),
