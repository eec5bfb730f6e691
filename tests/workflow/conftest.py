"""Workflow tests: real `snakemake` (and `dvc`) on a temporary copy of the workflow.

Nothing is written into the repository: every test copies the Snakefile, workflow/, params.yaml,
config/ and src/ into a temporary folder and runs there (results/, .snakemake/ and logs stay there).
The tiny CI run (config/ci.yaml) is made once per session and shared by the tests that only read it,
on every xdist worker: the first worker to ask builds it under a file lock, the others read its record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from filelock import FileLock
from smk_helpers import CI, LOCAL, copy_workflow, jobs_ran, require_commands, snakemake


class CIRun:
    """A finished local run of config/ci.yaml in its own folder."""

    def __init__(self, workdir: Path, seconds: float, output: str):
        self.workdir, self.seconds, self.output = workdir, seconds, output


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory, worker_id) -> CIRun:
    require_commands()
    # the workers' base temp folders share a parent: one run for the whole session
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    record = shared / "ci_run.json"
    with FileLock(str(shared / "ci_run.lock")):
        if record.is_file():
            saved = json.loads(record.read_text())
            return CIRun(Path(saved["workdir"]), saved["seconds"], saved["output"])
        workdir = copy_workflow(shared / "ci_local")
        t0 = time.monotonic()
        proc = snakemake(workdir, "--configfile", CI, "--profile", LOCAL, "all")
        run = CIRun(workdir, time.monotonic() - t0, proc.stdout + proc.stderr)
        record.write_text(json.dumps({"workdir": str(workdir), "seconds": run.seconds, "output": run.output}))
    print(f"\nci config, local run: {run.seconds:.1f} s, {len(jobs_ran(run.output))} jobs")
    return run
