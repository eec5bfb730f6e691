# Every evaluation run -> tables -> one figure per rule (with its report caption) + the viewer.
# `snakemake --report REPORT.html` then bundles the figures with workflow/report/*.rst.


rule aggregate:
    input:
        metrics=[paths.run_file(run, paths.METRICS_JSON) for run in all_eval_runs()],
    output:
        [paths.table(ROOT, name) for name in paths.TABLE_FILES],
    log:
        paths.log(ROOT, "aggregate", "tables"),
    benchmark:
        paths.benchmark(ROOT, "aggregate", "tables")
    conda:
        TIPPING_ENV
    params:
        runs=_args(all_eval_runs()),
        out=dirname_of(0),
        code=code("tables"),
    shell:
        "python -m tipping tables {params.runs} --out {params.out} > {log} 2>&1"


for _figure in P.report.figures:

    rule:
        name:
            f"plot_{_figure}"
        input:
            [paths.table(ROOT, name) for name in paths.TABLE_FILES],
        output:
            png=report(
                paths.figure(ROOT, _figure, "png"),
                caption=f"../report/{_figure}.rst",
                category="Figures",
            ),
            pdf=paths.figure(ROOT, _figure, "pdf"),
        log:
            paths.log(ROOT, "plot", _figure),
        conda:
            TIPPING_ENV
        params:
            figure=_figure,
            tables=input_dirname,
            code=code("plot"),
        shell:
            "python -m tipping plot {params.figure} --tables {params.tables} --out {output.png} > {log} 2>&1"


rule build_viewer:
    input:
        [paths.table(ROOT, name) for name in paths.TABLE_FILES],
    output:
        paths.viewer(ROOT),
    log:
        paths.log(ROOT, "build_viewer", "viewer"),
    conda:
        TIPPING_ENV
    params:
        tables=input_dirname,
        code=code("viewer"),
    shell:
        "python -m tipping viewer --tables {params.tables} --out {output} > {log} 2>&1"
