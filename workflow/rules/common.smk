# Configuration check and helpers shared by the rules: which jobs exist, and the inputs /
# arguments each job gets. Every value is read from P (tipping.config.Params, validated here once,
# before the DAG is built) and reaches a shell command through `params:`; nothing here decides
# anything scientific.

import functools
import os
import re
import shlex
import sys

from tipping import paths, pipeline, plan
from tipping.cli import parse_args
from tipping.codehash import PACKAGE_DIR, code_hash
from tipping.config import CONDITIONS, Params
from tipping.errors import InputError


def _config_source():
    """'params.yaml', or 'params.yaml+config/demo.yaml(+--config)' when overlays were merged."""
    names = []
    for f in workflow.configfiles:
        rel = os.path.relpath(f)
        if rel not in names:
            names.append(rel)
    names.sort(key=lambda f: f != "params.yaml")
    if workflow.config_settings.config:
        names.append("--config")
    return "+".join(names) or "config"


try:
    P = Params.load(config, _config_source())
    # a batch whose KV cache cannot fit runtime.gpu_memory_gb is refused here, not after hours in a queue
    plan.check_fits(P, _config_source())
    SITE = plan.site(
        P
    )  # (GPU GiB, throughput): runtime.*, which a profile's `config:` sets for its site
except (
    InputError
) as _exc:  # one line, before any job: "params.yaml: field multi.thresholds.3: ..."
    raise SystemExit(str(_exc)) from None

ROOT = P.results

# Every shell command: strict bash, and a fixed hash seed, so that anything a step writes in
# set/dict-hash order (e.g. PEFT's adapter_config.json target_modules) is the same in every run
# and on every host (records must be byte-identical local vs SLURM).
shell.prefix("set -euo pipefail; export PYTHONHASHSEED=0; ")

# The rules' `python -m tipping` imports the same package as this Snakefile (same venv and
# PYTHONPATH), and that package is what code_hash hashes; say so when it is not this checkout's.
if os.path.isdir(
    os.path.join(workflow.basedir, "src", "tipping")
) and not os.path.samefile(
    PACKAGE_DIR, os.path.join(workflow.basedir, "src", "tipping")
):
    print(
        f"warning: the rules run tipping from {PACKAGE_DIR}, not this workflow's src/tipping "
        f"(put {os.path.join(workflow.basedir, 'src')} on PYTHONPATH or `pip install -e .` here)",
        file=sys.stderr,
    )


def code(*command):
    """A params value: the hash of the code `tipping COMMAND` runs (tipping.codehash), so that a
    change in src/tipping reruns exactly the jobs it can affect. "{testbed}" and the like are
    filled from the job's wildcards, as in the rule's shell command."""
    return lambda wc: code_hash(*(word.format(**dict(wc.items())) for word in command))


# The first words of every model job's shell: torch and MKL use the job's {threads}, no more (the
# profiles' envvars cannot follow a job's threads).
THREADS = "export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}; "

# Rules run `python -m tipping` from the active venv (make setup); with `--sdm conda` Snakemake
# builds this environment from the same pins instead. (Relative to the rule files.)
TIPPING_ENV = "../envs/tipping.yaml"


wildcard_constraints:
    model="|".join(P.models),
    defence="none|dpo|grpo",
    testbed="single|multi",
    seed=r"\d+",
    round=r"\d+",
    condition="|".join(CONDITIONS),
    figure=r"[a-z_]+",
    section="dpo|grpo|sft",
    network="|".join(re.escape(P.population.slug(n)) for n in P.population.networks)
    or "(?!)",
    agents=r"\d+",
    fraction=r"[0-9.]+",
    placement="random|hubs|clustered",


@functools.cache
def _plan_rows():
    # once, on the first job whose resources are asked for
    return plan.rows(P, *SITE, parse=parse_args)


def plan_resources(rule):
    """A model rule's `resources:` mem_mb, gpu and runtime: the plan's numbers for the job
    (tipping.plan.job_resources), scaled by the attempt. Snakemake calls them per job.
    """

    def resource(key):
        return lambda wc, attempt: plan.job_resources(
            plan.job_row(_plan_rows(), rule, dict(wc.items())), attempt
        )[key]

    return {key: resource(key) for key in ("mem_mb", "gpu", "runtime")}


def _args(*parts):
    return shlex.join([str(x) for p in parts for x in p])


def all_eval_runs():
    """Every evaluation run folder of the experiment, in config order (the tables' input order)."""
    return [
        paths.eval_run(ROOT, *policy, c)
        for policy in pipeline.policies(P)
        for c in P.conditions(policy[2])
    ]


def population_runs(model):
    """The population run folders of a model, in params order (the report's input order)."""
    pop = P.population
    return [
        paths.population_run(ROOT, model, pop.slug(net), n, f"{f:g}", pl, s)
        for net in pop.networks
        for n in pop.agents
        for f in pop.fractions
        for pl in pop.placements
        for s in pop.replicates(P.seeds)
    ]


def final_targets():
    targets = [paths.table(ROOT, name) for name in paths.TABLE_FILES]
    if P.population.networks:
        targets += [paths.population_report(ROOT, m) for m in P.models]
    targets += [
        paths.figure(ROOT, f, ext) for f in P.report.figures for ext in ("png", "pdf")
    ]
    if P.report.viewer:
        targets.append(paths.viewer(ROOT))
    return targets


def policy_inputs(wc, round):
    """Base model folder, plus the adapter that makes the policy of evolution round `round`."""
    inputs = {"model": paths.model_dir(ROOT, wc.model)}
    adapter = paths.policy_adapter(
        ROOT, wc.model, wc.defence, wc.testbed, wc.seed, round
    )
    if adapter:
        inputs["adapter"] = adapter
    return inputs


def policy_spec(wc, round):
    adapter = paths.policy_adapter(
        ROOT, wc.model, wc.defence, wc.testbed, wc.seed, round
    )
    return pipeline.policy_spec(P, wc.model, paths.model_dir(ROOT, wc.model), adapter)


def run_tags(wc, round, condition, split, phase):
    return _args(
        [
            f"--tag={k}={v}"
            for k, v in (
                ("model", wc.model),
                ("defence", wc.defence),
                ("evolution_round", round),
                ("condition", condition),
                ("replicate", wc.seed),
                ("split", split),
                ("phase", phase),
            )
        ]
    )


def schedule_args(section, wc):
    """The schedule flags of a training command (the same values are in its --params file)."""
    t = P.training(section, wc.model, wc.testbed)
    args = ["--epochs", t["epochs"], "--lr", t["learning_rate"]]
    if t["max_steps"] > 0:
        args += ["--max-steps", t["max_steps"]]
    return _args(args)


def dirname_of(key):
    """A params function: the folder of the named output (a run folder, the tables folder)."""
    return lambda wc, output: os.path.dirname(output[key])


def input_dirname(wc, input):
    return os.path.dirname(input[0])


def prev_round(wc):
    return int(wc.round) - 1


# -- align -----------------------------------------------------------------------------------


def align_inputs(wc):
    inputs = {
        "model": paths.model_dir(ROOT, wc.model),
        "params": paths.training_params(ROOT, wc.defence, wc.model, wc.testbed),
    }
    if wc.defence == "dpo":
        inputs["pairs"] = paths.preference_pairs(ROOT, wc.model, wc.testbed)
    return inputs


def align_data_args(wc, input):
    """dpo trains on the pairs; grpo plays the train split's items with the rule-based reward."""
    if wc.defence == "dpo":
        return _args(["--pairs", input.pairs])
    return _args(pipeline.grpo_items_args(P, wc.testbed))


# -- evolve ----------------------------------------------------------------------------------


def finetune_inputs(wc):
    inputs = policy_inputs(
        wc, prev_round(wc)
    )  # model, and the previous round's adapter (if any)
    if "adapter" in inputs:
        inputs["init_adapter"] = inputs.pop("adapter")
    # sft: the kept turns; dpo: the reward-ranked pairs the filter wrote next to them
    data = paths.ranked_pairs if P.evolution.finetune.method == "dpo" else paths.kept
    inputs["data"] = data(ROOT, wc.model, wc.defence, wc.testbed, wc.seed, wc.round)
    inputs["params"] = paths.training_params(
        ROOT, P.evolution.finetune.method, wc.model, wc.testbed
    )
    return inputs


def init_adapter_args(wc, input):
    return (
        _args(["--init-adapter", input.init_adapter])
        if "init_adapter" in input.keys()
        else ""
    )


def training_params_yaml(wc):
    import yaml

    return yaml.safe_dump(
        {wc.section: P.training(wc.section, wc.model, wc.testbed)}, sort_keys=True
    )
