# Weight-level self-evolution, one set of nodes per round r >= 1:
#   rollout_episodes (policy r-1 on the train split) -> score_rewards -> filter_trajectories
#   -> finetune_policy (LoRA continued from round r-1's adapter) -> adapter of round r.


# The evaluation rule run on the train split: policy r-1, the treatment, a rollout seed (same command).
use rule evaluate_policy as rollout_episodes with:
    input:
        unpack(lambda wc: policy_inputs(wc, prev_round(wc))),
    output:
        **paths.run_files(paths.rollout_run(ROOT)),
    log:
        paths.log(ROOT, "rollout_episodes", paths.chain_stem()),
    benchmark:
        paths.benchmark(ROOT, "rollout_episodes", paths.chain_stem())
    wildcard_constraints:
        round=r"[1-9]\d*",
    resources:
        **plan_resources("rollout_episodes"),
    params:
        policy=lambda wc: policy_spec(wc, prev_round(wc)),
        protocol=lambda wc: _args(
            pipeline.rollout_args(P, wc.testbed, wc.seed, wc.round)
        ),
        tags=lambda wc: run_tags(
            wc, prev_round(wc), "treatment", P.train_split(wc.testbed), "rollout"
        ),


rule score_rewards:
    input:
        metrics=paths.run_file(paths.rollout_run(ROOT), "metrics.json"),
        records=paths.run_file(paths.rollout_run(ROOT), "records.jsonl"),
    output:
        paths.scored(ROOT),
    log:
        paths.log(ROOT, "score_rewards", paths.chain_stem()),
    group:
        "select"
    conda:
        TIPPING_ENV
    params:
        run=input_dirname,
        code=code("evolve", "score"),
    shell:
        "python -m tipping evolve score --run {params.run} --out {output} > {log} 2>&1"


rule filter_trajectories:
    input:
        paths.scored(ROOT),
    output:
        **(
            {"pairs": paths.ranked_pairs(ROOT)}
            if P.evolution.finetune.method == "dpo"
            else {}
        ),
        kept=paths.kept(ROOT),
        summary=paths.summary_path(paths.kept(ROOT)),
    log:
        paths.log(ROOT, "filter_trajectories", paths.chain_stem()),
    group:
        "select"
    conda:
        TIPPING_ENV
    params:
        rule=P.evolution.filter.rule,
        fraction=P.evolution.filter.fraction,
        pairs=lambda wc, output: (
            _args(["--pairs-out", output.pairs]) if "pairs" in output.keys() else ""
        ),
        code=code("evolve", "filter"),
    shell:
        "python -m tipping evolve filter --scored {input} --rule {params.rule} --fraction {params.fraction}"
        " --out {output.kept} {params.pairs} > {log} 2>&1"


rule finetune_policy:
    input:
        unpack(finetune_inputs),
    output:
        directory(paths.evolved_adapter(ROOT)),
    log:
        paths.log(ROOT, "finetune_policy", paths.chain_stem()),
    benchmark:
        paths.benchmark(ROOT, "finetune_policy", paths.chain_stem())
    wildcard_constraints:
        round=r"[1-9]\d*",
    conda:
        TIPPING_ENV
    threads: P.runtime.threads
    resources:
        **plan_resources("finetune_policy"),
    params:
        method=P.evolution.finetune.method,
        init=init_adapter_args,
        schedule=lambda wc: schedule_args(P.evolution.finetune.method, wc),
        code=code("evolve", "finetune"),
    shell:
        THREADS
        + "python -m tipping evolve finetune --model {input.model} {params.init} --data {input.data}"
        " --method {params.method} --params {input.params} {params.schedule} --out {output} > {log} 2>&1"
