# Base weights into a local folder, and the resolved training settings each training job reads.


rule prepare_model:
    output:
        directory(paths.model_dir(ROOT)),
    log:
        paths.log(ROOT, "prepare_model", "{model}"),
    benchmark:
        paths.benchmark(ROOT, "prepare_model", "{model}")
    conda:
        TIPPING_ENV
    params:
        name="{model}",
        code=code("model", "prepare"),
    shell:
        "python -m tipping model prepare {params.name} --out {output} > {log} 2>&1"


# The dpo/grpo/sft section with its per-testbed and per-model overrides applied: one small file
# per (section, model, testbed), so a change reruns only the jobs that train with it.
rule write_training_params:
    output:
        paths.training_params(ROOT),
    log:
        paths.log(ROOT, "write_training_params", "{section}_{model}_{testbed}"),
    localrule: True
    conda:
        TIPPING_ENV
    params:
        text=training_params_yaml,
    shell:
        "printf '%s' {params.text:q} > {output}; echo 'wrote {output}' > {log}"
