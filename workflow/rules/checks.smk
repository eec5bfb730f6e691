# Testing only (params `fail_once: true`): a probe job that fails its first attempt on purpose,
# so the tests can show that the profile's retries recover (locally and under SLURM). The
# marker is not an output, so it survives the failed attempt; aggregate waits for the probe.


rule probe_fail_once:
    output:
        paths.fail_once_done(ROOT),
    params:
        marker=paths.fail_once_marker(ROOT),
    conda:
        TIPPING_ENV
    log:
        paths.log(ROOT, "probe_fail_once", "probe"),
    shell:
        "if [ ! -e {params.marker} ]; then"
        " mkdir -p \"$(dirname {params.marker})\"; touch {params.marker};"
        " echo 'injected failure: first attempt exits 1' > {log}; exit 1; fi; "
        "echo 'attempt after the injected failure succeeded' > {log}; echo ok > {output}"
