"""Workflow tests: real `snakemake` (and `dvc`) on a temporary copy of the workflow.

Nothing is written into the repository: every test copies the Snakefile, workflow/, params.yaml,
config/ and src/ into a temporary folder and runs there (results/, .snakemake/ and logs stay there).
The tiny CI run (config/ci.yaml) is made once per session and shared by the tests that only read it.
"""

from __future__ import annotations

import time

import pytest
from smk_helpers import CI, LOCAL, copy_workflow, jobs_ran, require_commands, snakemake


class CIRun:
    """A finished local run of config/ci.yaml in its own folder."""

    def __init__(self, workdir: Path, seconds: float, output: str):
        self.workdir, self.seconds, self.output = workdir, seconds, output


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory) -> CIRun:
    require_commands()
    workdir = copy_workflow(tmp_path_factory.mktemp("ci_local"))
    t0 = time.monotonic()
    proc = snakemake(workdir, "--configfile", CI, "--profile", LOCAL, "all")
    run = CIRun(workdir, time.monotonic() - t0, proc.stdout + proc.stderr)
    print(f"\nci config, local run: {run.seconds:.1f} s, {len(jobs_ran(run.output))} jobs")
    return run
