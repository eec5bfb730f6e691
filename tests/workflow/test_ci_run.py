"""A real tiny run of the whole DAG (config/ci.yaml: tiny-qwen3, 26 jobs): it completes, a rerun
is a no-op, a run killed mid-DAG finishes when started again (nothing partial kept as done), and
two runs give byte-identical records. Plus: the profile's retry recovers a job that fails once."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time

import pytest
from smk_helpers import (CI, CI_RESULTS, LOCAL, VENV_BIN, copy_workflow, dry_run_jobs, env, jobs_ran, run_files,
                         snakemake)

from tipping import paths
from tipping.config import Params

ALL_RULES = {"prepare_model", "write_training_params", "make_preference_pairs", "align_policy", "rollout_episodes",
             "score_rewards", "filter_trajectories", "finetune_policy", "evaluate_policy", "aggregate", "build_viewer"}


def _expected(workdir) -> list:
    p = Params.from_files(workdir / "params.yaml", workdir / CI)
    runs = [paths.eval_run(p.results, m, d, t, s, r, c) for m in p.models for d in p.defences for t in p.testbeds
            for s in p.seeds for r in range(p.evolution.rounds + 1) for c in p.conditions(t)]
    figures = [paths.figure(p.results, f, ext) for f in p.report.figures for ext in ("png", "pdf")]
    return [paths.run_file(r, "metrics.json") for r in runs] + figures + [paths.viewer(p.results)] + \
        [paths.table(p.results, t) for t in paths.TABLE_FILES]


@pytest.mark.slow
def test_ci_run_completes(ci_run):
    for rel in _expected(ci_run.workdir):
        assert (ci_run.workdir / rel).is_file(), rel
    assert ALL_RULES <= set(jobs_ran(ci_run.output))
    jobs = dry_run_jobs(ci_run.output)
    assert {w["round"] for w in jobs["finetune_policy"]} == {"1"}
    assert {w["round"] for w in jobs["evaluate_policy"]} == {"0", "1"}


@pytest.mark.slow
def test_rerun_is_noop(ci_run):
    proc = snakemake(ci_run.workdir, "--configfile", CI, "--profile", LOCAL, "all")
    out = proc.stdout + proc.stderr
    assert "Nothing to be done" in out
    assert jobs_ran(out) == []


def _incomplete(workdir) -> list[str]:
    folder = workdir / ".snakemake" / "incomplete"
    names = [p.name for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return [base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)).decode(errors="replace") for n in names]


def _start_and_interrupt(workdir, sig, log_path) -> list[str]:
    """Start the CI run; once one more evaluation has finished and another job is mid-run, send
    `sig` to the whole process group (snakemake and its jobs); return what was cut mid-job."""
    evals = workdir / CI_RESULTS / "evals"
    done_before = len(list(evals.glob("**/metrics.json")))
    cmd = [str(VENV_BIN / "python"), "-m", "snakemake", "--configfile", CI, "--profile", LOCAL, "all"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env(workdir), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + 900
        while len(list(evals.glob("**/metrics.json"))) <= done_before or not _incomplete(workdir):
            assert proc.poll() is None, f"the run ended before it could be interrupted:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no evaluation finished in 15 min"
            time.sleep(0.1)
        cut = _incomplete(workdir)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=300)
    return cut


@pytest.mark.slow
def test_interrupted_and_killed_runs_finish_when_rerun_and_match(ci_run, tmp_path):
    workdir = copy_workflow(tmp_path / "killed")
    # 1. Ctrl-C (SIGINT to the process group): snakemake stops its jobs and cleans up; `snakemake`
    #    again carries on, redoing the interrupted jobs
    cut = _start_and_interrupt(workdir, signal.SIGINT, tmp_path / "sigint.log")
    assert cut
    # 2. a hard kill (SIGKILL, as a node crash): no cleanup, the jobs' outputs stay marked incomplete
    cut = _start_and_interrupt(workdir, signal.SIGKILL, tmp_path / "sigkill.log")
    assert cut and set(cut) <= set(_incomplete(workdir))
    # nothing partial is kept as done: a dry run wants every job that was cut mid-run
    dry = snakemake(workdir, "-n", "--rerun-incomplete", "all", "--configfile", CI)
    for output in cut:
        assert output in dry.stdout + dry.stderr, f"{output} was cut mid-job but is not rerun"
    # the killed snakemake left its lock: the next run says so (runs nothing) until --unlock
    locked = snakemake(workdir, "--configfile", CI, "--profile", LOCAL, "all", check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    assert jobs_ran(locked.stdout + locked.stderr) == []
    snakemake(workdir, "--unlock", "all", "--configfile", CI)
    # starting again (the profile has rerun-incomplete) finishes the DAG
    snakemake(workdir, "--configfile", CI, "--profile", LOCAL, "all")
    for rel in _expected(workdir):
        assert (workdir / rel).is_file(), rel
    assert not _incomplete(workdir)
    # two independent runs (one of them interrupted twice): byte-identical records
    first, second = run_files(ci_run.workdir), run_files(workdir)
    assert first and first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    for table in ("rates.csv", "effects.csv", "summary.json"):
        assert (workdir / CI_RESULTS / "tables" / table).read_bytes() == \
            (ci_run.workdir / CI_RESULTS / "tables" / table).read_bytes(), table


def test_a_job_that_fails_once_is_retried(tmp_path):
    """`fail_once: true` adds a probe job whose first attempt exits 1; the local profile retries it."""
    workdir = copy_workflow(tmp_path / "retry")
    target = paths.fail_once_done("results/ci")
    proc = snakemake(workdir, target, "--profile", LOCAL, "--configfile", CI, "--config", "fail_once=true")
    out = proc.stdout + proc.stderr
    assert jobs_ran(out).count("probe_fail_once") == 2, out[-3000:]
    assert (workdir / paths.fail_once_marker("results/ci")).exists()
    assert (workdir / target).read_text() == "ok\n"
