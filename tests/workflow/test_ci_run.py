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
from smk_helpers import (
    CI,
    CI_RESULTS,
    LOCAL,
    PROBE_DONE,
    VENV_BIN,
    add_probe,
    copy_workflow,
    dry_run_jobs,
    hold_env,
    jobs_ran,
    run_files,
    snakemake,
)

from tipping import paths
from tipping.config import Params

ALL_RULES = {
    "prepare_model",
    "write_training_params",
    "make_preference_pairs",
    "align_policy",
    "rollout_episodes",
    "score_rewards",
    "filter_trajectories",
    "finetune_policy",
    "evaluate_policy",
    "aggregate",
    "build_viewer",
}


def _expected(workdir) -> list:
    p = Params.from_files(workdir / "params.yaml", workdir / CI)
    runs = [
        paths.eval_run(p.results, m, d, t, s, r, c)
        for m in p.models
        for d in p.defences
        for t in p.testbeds
        for s in p.seeds
        for r in range(p.evolution.rounds + 1)
        for c in p.conditions(t)
    ]
    figures = [paths.figure(p.results, f, ext) for f in p.report.figures for ext in ("png", "pdf")]
    return (
        [paths.run_file(r, "metrics.json") for r in runs]
        + figures
        + [paths.viewer(p.results)]
        + [paths.table(p.results, t) for t in paths.TABLE_FILES]
    )


@pytest.mark.slow
def test_ci_run_completes(ci_run):
    for rel in _expected(ci_run.workdir):
        assert (ci_run.workdir / rel).is_file(), rel
    assert set(jobs_ran(ci_run.output)) >= ALL_RULES
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


def _run_until_held(workdir, hold_out: str, sig, log_path) -> list[str]:
    """Start the CI run on one core without retries; once the job writing `hold_out` has done its
    work and hangs (overlay/bin/python), send `sig` to the whole process group (snakemake and the
    job); return the outputs that were marked incomplete then and not before: the held job's, as it
    runs alone. (Markers an earlier interrupted run left stay until their job runs again, which with
    one core may come after the held job: the scheduler's order among ready jobs is not fixed.)"""
    held = workdir / "held"
    before = set(_incomplete(workdir))
    cmd = [
        str(VENV_BIN / "python"),
        "-m",
        "snakemake",
        "--configfile",
        CI,
        "--profile",
        LOCAL,
        "--cores",
        "1",
        "--retries",
        "0",
        "all",
    ]
    with open(log_path, "w") as log:
        # SIGINT back to its default: a shell that starts pytest in the background has it ignored, which
        # the run would inherit (Python then installs no KeyboardInterrupt handler)
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=hold_env(workdir, hold_out, held),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 1200  # only a guard against a hung run: the wait is for the file
        while not held.exists():
            assert proc.poll() is None, f"the run ended before {hold_out} was held:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{hold_out} was not reached in 20 min"
            time.sleep(0.1)
        cut = [out for out in _incomplete(workdir) if out not in before]
        os.killpg(proc.pid, sig)
        proc.wait(timeout=300)
    held.unlink()
    assert cut and all(out == hold_out or out.startswith(hold_out + "/") for out in cut), cut
    return cut


def _wanted(workdir, hold_out: str) -> bool:
    """Whether a dry run (with --rerun-incomplete) would run the job writing `hold_out` again."""
    dry = snakemake(workdir, "-n", "-p", "--rerun-incomplete", "all", "--configfile", CI)
    return f"--out {hold_out} " in dry.stdout


@pytest.mark.slow
def test_interrupted_and_killed_runs_finish_when_rerun_and_match(ci_run, tmp_path):
    workdir = copy_workflow(tmp_path / "killed")
    evaluation = paths.eval_run(CI_RESULTS, "tiny-qwen3", "none", "single", 0, 0, "treatment")
    finetune = paths.evolved_adapter(CI_RESULTS, "tiny-qwen3", "dpo", "single", 0, 1)
    # 1. Ctrl-C (SIGINT to the process group) while an evaluation, its files written, has not ended:
    #    snakemake stops; the job is not kept as done
    _run_until_held(workdir, evaluation, signal.SIGINT, tmp_path / "sigint.log")
    assert _wanted(workdir, evaluation)
    # 2. a hard kill (SIGKILL, as a node crash) of the next run while a later job (training) has not
    #    ended: no cleanup, its outputs stay marked incomplete, and complete-looking files are not
    #    kept as done: a dry run wants the job again
    cut = _run_until_held(workdir, finetune, signal.SIGKILL, tmp_path / "sigkill.log")
    assert set(cut) <= set(_incomplete(workdir))
    assert (workdir / finetune).is_dir() and _wanted(workdir, finetune)
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
        assert (workdir / CI_RESULTS / "tables" / table).read_bytes() == (
            ci_run.workdir / CI_RESULTS / "tables" / table
        ).read_bytes(), table


def test_a_job_that_fails_once_is_retried(tmp_path):
    """The test-only probe job (overlay/probe.smk) exits 1 on its first attempt; the local profile retries it."""
    workdir = copy_workflow(tmp_path / "retry")
    add_probe(workdir)
    proc = snakemake(workdir, PROBE_DONE, "--profile", LOCAL, "--configfile", CI)
    out = proc.stdout + proc.stderr
    assert jobs_ran(out).count("probe_fail_once") == 2, out[-3000:]
    assert (workdir / PROBE_DONE).read_text() == "ok\n"


def test_the_paper_dag_has_no_test_rule(tmp_path):
    proc = snakemake(copy_workflow(tmp_path / "plain"), "--list-rules", "--configfile", CI, timeout=120)
    assert "probe_fail_once" not in proc.stdout + proc.stderr
