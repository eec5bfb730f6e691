"""The CI config through a real one-node SLURM cluster (scripts/slurm/start.sh; .ci/run starts it).

Skipped only where SLURM's client `sinfo` is absent. Asserts that the jobs went through sbatch
(job ids in the executor plugin's logs, known to SLURM, GPU rules with a gpu gres), that a job
failing once is retried by the profile and the run completes, and that the records equal the
local run's byte for byte.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from smk_helpers import CI, PROBE_DONE, ROOT, add_probe, copy_workflow, jobs_ran, run_files, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

if shutil.which("sinfo") is None:
    pytest.skip(
        "SLURM is not installed here (no `sinfo`); scripts/slurm/start.sh brings it up", allow_module_level=True
    )

SLURM_CI = str(ROOT / "workflow/profiles/slurm-ci")
GPU_RULES = {
    "make_preference_pairs",
    "align_policy",
    "rollout_episodes",
    "finetune_policy",
    "evaluate_policy",
    "population_run",
    "population_probe",
}


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    state = subprocess.run(["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True)
    if state.returncode != 0 or not re.search(r"up (idle|mix|alloc)", state.stdout):
        pytest.fail(f"SLURM is installed but not up (run scripts/slurm/start.sh): {state.stdout}{state.stderr}")
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm"))
    add_probe(workdir)  # the test-only job that fails its first attempt (overlay/probe.smk)
    proc = snakemake(workdir, "all", PROBE_DONE, "--configfile", CI, "--profile", SLURM_CI, timeout=2400)
    return workdir, proc.stdout + proc.stderr


def _slurm_logs(workdir) -> dict[str, list[str]]:
    """rule (or group) folder -> SLURM job ids, from the plugin's kept logs."""
    logs = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        folder = log.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0]
        logs.setdefault(folder, []).append(log.stem)
    return logs


def test_jobs_went_through_sbatch(slurm_run):
    workdir, output = slurm_run
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
    logs = _slurm_logs(workdir)
    ids = sorted(i for v in logs.values() for i in v)
    assert ids and all(i.isdigit() for i in ids)
    assert sorted(submitted) == ids
    for rule in GPU_RULES | {"prepare_model", "aggregate", "build_viewer"}:
        assert f"rule_{rule}" in logs, f"{rule} was not submitted to SLURM"
    assert any(k.startswith("group_select") for k in logs)  # score + filter: one grouped job
    # SLURM knows every one of them (squeue keeps finished jobs for MinJobAge = 3600 s > the run's timeout)
    known = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%i %T %P"], capture_output=True, text=True, check=True
    ).stdout
    states = {line.split()[0]: line.split()[1:] for line in known.splitlines()}
    for i in ids:
        assert i in states, f"SLURM job {i} is unknown to squeue"
    # model jobs ran in the gpu partition with a GPU (fake gres) allocated
    for i in logs["rule_evaluate_policy"]:
        info = subprocess.run(["scontrol", "show", "job", i], capture_output=True, text=True, check=True).stdout
        assert "Partition=gpu" in info and "gres:gpu:1" in info, info


def test_job_failing_once_is_retried_and_the_run_completes(slurm_run):
    workdir, output = slurm_run
    probe = _slurm_logs(workdir)["rule_probe_fail_once"]
    assert len(probe) == 2  # attempt 1 failed (exit 1), attempt 2 succeeded
    states = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%i %T"], capture_output=True, text=True, check=True
    ).stdout
    by_id = dict(line.split() for line in states.splitlines())
    assert sorted(by_id[i] for i in probe) == ["COMPLETED", "FAILED"]
    assert (workdir / PROBE_DONE).read_text() == "ok\n"
    assert "(Rule: all)" in output and re.search(r"(\d+) of \1 steps \(100%\) done", output)
    assert jobs_ran(output).count("probe_fail_once") == 2


def test_slurm_records_equal_local_records(slurm_run, ci_run):
    workdir, _ = slurm_run
    local, slurm = run_files(ci_run.workdir), run_files(workdir)
    assert local and local.keys() == slurm.keys()
    assert [k for k in local if local[k] != slurm[k]] == []
