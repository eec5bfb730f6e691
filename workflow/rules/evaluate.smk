# Evaluation of the policy of every evolution round (0 = the aligned policy) on the paper's
# protocol: single = single-test, 6 rounds, window 5; multi = the threshold x reward-set grid.
# Each condition (treatment and its controls) is its own run folder. rollout_episodes (evolve.smk)
# is this rule on the train split.


rule evaluate_policy:
    input:
        unpack(lambda wc: policy_inputs(wc, wc.round)),
    output:
        **paths.run_files(paths.eval_run(ROOT)),
    log:
        paths.log(ROOT, "evaluate_policy", paths.chain_stem() + "_{condition}"),
    benchmark:
        paths.benchmark(ROOT, "evaluate_policy", paths.chain_stem() + "_{condition}")
    conda:
        TIPPING_ENV
    threads: P.runtime.threads
    resources:
        **plan_resources("evaluate_policy"),
    params:
        testbed="{testbed}",
        out=dirname_of("metrics"),
        policy=lambda wc: policy_spec(wc, wc.round),
        protocol=lambda wc: _args(
            pipeline.eval_args(P, wc.testbed, wc.seed, wc.condition)
        ),
        decision=lambda wc: P.model_settings[wc.model].decision,
        sampling=lambda wc: _args(pipeline.sampling_args(P, wc.model, wc.testbed)),
        cache=lambda wc: paths.response_cache(ROOT, wc.model),
        tags=lambda wc: run_tags(
            wc, wc.round, wc.condition, P.eval_split(wc.testbed), "eval"
        ),
        code=code("run", "{testbed}"),
    shell:
        THREADS
        + "python -m tipping run {params.testbed} {params.protocol} --policy {params.policy}"
        " --decision {params.decision} {params.sampling}"
        " --cache-dir {params.cache} --no-progress {params.tags} --out {params.out} > {log} 2>&1"
