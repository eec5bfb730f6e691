# Populations on networks (issue 13): every (model, network, agents, fraction, placement, seed) is
# one `tipping run population` of the base model; per model, the response-function probe and the
# report (adoption per round, the adoption curve with its critical mass, the mean-field prediction,
# figures). No jobs unless params `population.networks` lists some.


rule population_run:
    input:
        model=paths.model_dir(ROOT),
    output:
        **paths.run_files(paths.population_run(ROOT)),
        edges=paths.population_edges(paths.population_run(ROOT)),
    log:
        paths.log(
            ROOT,
            "population_run",
            "{model}_{network}_n{agents}_f{fraction}_{placement}_s{seed}",
        ),
    benchmark:
        paths.benchmark(
            ROOT,
            "population_run",
            "{model}_{network}_n{agents}_f{fraction}_{placement}_s{seed}",
        )
    conda:
        TIPPING_ENV
    threads: P.runtime.threads
    resources:
        **plan_resources("population_run"),
    params:
        out=dirname_of("metrics"),
        policy=lambda wc: pipeline.policy_spec(
            P, wc.model, paths.model_dir(ROOT, wc.model), None
        ),
        protocol=lambda wc: _args(
            pipeline.population_args(P, wc.network, wc.agents, wc.fraction)
        ),
        placement="{placement}",
        seed="{seed}",
        model="{model}",
        decision=lambda wc: P.model_settings[wc.model].decision,
        sampling=lambda wc: _args(pipeline.sampling_args(P, wc.model, "multi")),
        cache=lambda wc: paths.response_cache(ROOT, wc.model),
        code=code("run", "population"),
    shell:
        THREADS
        + "python -m tipping run population {params.protocol} --placement {params.placement} --seed {params.seed}"
        " --policy {params.policy} --decision {params.decision} {params.sampling} --cache-dir {params.cache}"
        " --no-progress --tag model={params.model} --out {params.out} > {log} 2>&1"


rule population_probe:
    input:
        model=paths.model_dir(ROOT),
    output:
        paths.population_probe(ROOT),
    log:
        paths.log(ROOT, "population_probe", "{model}"),
    conda:
        TIPPING_ENV
    threads: P.runtime.threads
    resources:
        **plan_resources("population_probe"),
    params:
        policy=lambda wc: pipeline.policy_spec(
            P, wc.model, paths.model_dir(ROOT, wc.model), None
        ),
        probe=lambda wc: _args(pipeline.population_probe_args(P)),
        sampling=lambda wc: _args(pipeline.sampling_args(P, wc.model, "multi")),
        code=code("population", "probe"),
    shell:
        THREADS
        + "python -m tipping population probe {params.probe} --policy {params.policy} {params.sampling}"
        " --no-progress --out {output} > {log} 2>&1"


rule population_report:
    input:
        runs=lambda wc: [
            paths.run_file(run, "metrics.json") for run in population_runs(wc.model)
        ],
        response=paths.population_probe(ROOT),
    output:
        directory(paths.population_report(ROOT)),
    log:
        paths.log(ROOT, "population_report", "{model}"),
    conda:
        TIPPING_ENV
    params:
        runs=lambda wc: _args(population_runs(wc.model)),
        code=code("population", "report"),
    shell:
        "python -m tipping population report {params.runs} --response {input.response} --out {output}"
        " > {log} 2>&1"
