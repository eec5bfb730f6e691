# Test-only rule (smk_helpers.add_probe puts it in a workflow copy; the paper's DAG never has it):
# a probe job whose first attempt fails on purpose, so the tests can show that a profile's retries
# recover, locally and under SLURM. The marker is not an output, so it survives the failed attempt.


rule probe_fail_once:
    output:
        f"{ROOT}/checks/fail_once.done",
    log:
        paths.log(ROOT, "probe_fail_once", "probe"),
    params:
        marker=f"{ROOT}/checks/fail_once.attempted",
    shell:
        "if [ ! -e {params.marker} ]; then"
        ' mkdir -p "$(dirname {params.marker})"; touch {params.marker};'
        " echo 'injected failure: first attempt exits 1' > {log}; exit 1; fi; "
        "echo 'attempt after the injected failure succeeded' > {log}; echo ok > {output}"
