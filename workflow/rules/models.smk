# Base weights into a local folder, and the resolved training settings each training job reads.


rule prepare_model:
    output:
        directory(paths.model_dir(ROOT)),
    params:
        name="{model}",
        code=code("model", "prepare"),
    conda:
        TIPPING_ENV
    log:
        paths.log(ROOT, "prepare_model", "{model}"),
    benchmark:
        paths.benchmark(ROOT, "prepare_model", "{model}")
    shell:
        "python -m tipping model prepare {params.name} --out {output} > {log} 2>&1"


rule write_training_params:
    """The dpo/grpo/sft section with its per-testbed and per-model overrides applied: one small
    file per (section, model, testbed), so a change reruns only the jobs that train with it."""
    localrule: True
    output:
        paths.training_params(ROOT),
    params:
        text=training_params_yaml,
    conda:
        TIPPING_ENV
    log:
        paths.log(ROOT, "write_training_params", "{section}_{model}_{testbed}"),
    shell:
        "printf '%s' {params.text:q} > {output}; echo 'wrote {output}' > {log}"
