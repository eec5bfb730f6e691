# The defence: none (the base model), dpo (LoRA-DPO on self-generated preference pairs) or grpo.


rule make_preference_pairs:
    input:
        model=paths.model_dir(ROOT),
    output:
        pairs=paths.preference_pairs(ROOT),
        summary=paths.summary_path(paths.preference_pairs(ROOT)),
    log:
        paths.log(ROOT, "make_preference_pairs", "{model}_{testbed}"),
    benchmark:
        paths.benchmark(ROOT, "make_preference_pairs", "{model}_{testbed}")
    conda:
        TIPPING_ENV
    threads: P.runtime.threads
    resources:
        **plan_resources("make_preference_pairs"),
    params:
        data=lambda wc: _args(pipeline.pairs_args(P, wc.testbed)),
        policy=lambda wc, input: pipeline.policy_spec(P, wc.model, input.model, None),
        decision=lambda wc: P.model_settings[wc.model].decision,
        sampling=lambda wc: _args(pipeline.sampling_args(P, wc.model, wc.testbed)),
        cache=lambda wc: paths.response_cache(ROOT, wc.model),
        code=code("align", "pairs"),
    shell:
        THREADS
        + "python -m tipping align pairs {params.data} --policy {params.policy}"
        " --decision {params.decision} {params.sampling}"
        " --cache-dir {params.cache} --no-progress --out {output.pairs} > {log} 2>&1"


rule align_policy:
    input:
        unpack(align_inputs),
    output:
        directory(paths.aligned_adapter(ROOT)),
    log:
        paths.log(ROOT, "align_policy", "{model}_{defence}_{testbed}"),
    benchmark:
        paths.benchmark(ROOT, "align_policy", "{model}_{defence}_{testbed}")
    wildcard_constraints:
        defence="dpo|grpo",
    conda:
        TIPPING_ENV
    threads: P.runtime.threads
    resources:
        **plan_resources("align_policy"),
    params:
        method="{defence}",
        data=align_data_args,
        schedule=lambda wc: schedule_args(wc.defence, wc),
        code=code("align", "{defence}"),
    shell:
        THREADS
        + "python -m tipping align {params.method} --model {input.model} {params.data}"
        " --params {input.params} {params.schedule} --out {output} > {log} 2>&1"
