"""A code change reruns exactly the jobs it can affect, and every job declares what it writes.

Each rule passes the hash of the code its `tipping` command runs (tipping.codehash) as a param, so
`snakemake -n` on a copy of the finished CI run (results, Snakemake's metadata and src/, mtimes
kept) lists the jobs whose code changed and everything downstream of them, and nothing else.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from smk_helpers import CI, CI_RESULTS, dry_run_jobs, snakemake

pytestmark = pytest.mark.slow

# population_report reads run folders and draws with the tables' and plots' code; the probe does not
DOWNSTREAM_OF_TABLES = {"aggregate", "build_viewer", "plot_single_rounds", "plot_evolution", "population_report", "all"}
NOT_RUN_FILES = ("logs", "benchmarks", "cache")  # per-job logs and the response cache are not outputs


@pytest.fixture(scope="module")
def finished(ci_run, tmp_path_factory) -> Path:
    """A copy of the finished CI run; each test edits src/ and restores it."""
    dest = tmp_path_factory.mktemp("rerun") / "w"
    shutil.copytree(
        ci_run.workdir, dest, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete", "log", "__pycache__")
    )
    return dest


def _dry_run(workdir: Path) -> tuple[dict[str, list[dict]], str]:
    proc = snakemake(workdir, "-n", "all", "--configfile", CI, timeout=300)
    out = proc.stdout + proc.stderr
    return dry_run_jobs(out), out


class _Edit:
    """Replace text in a file of the copy's package for the duration of a with-block."""

    def __init__(self, workdir: Path, module: str, old: str | None, new: str):
        self.path, self.old, self.new = workdir / "src" / "tipping" / module, old, new

    def __enter__(self):
        self.text = self.path.read_text()
        if self.old is None:
            edited = self.text + self.new
        else:
            assert self.old in self.text, f"{self.path}: the test's edit needs the text {self.old!r}"
            edited = self.text.replace(self.old, self.new)
        self.path.write_text(edited)

    def __exit__(self, *exc):
        self.path.write_text(self.text)


def test_unchanged_copy_has_nothing_to_do(finished):
    jobs, out = _dry_run(finished)
    assert "Nothing to be done" in out and not jobs, out[-3000:]


def test_feedback_string_change_reruns_the_testbed_jobs_and_downstream(ci_run, finished):
    everything = dry_run_jobs(ci_run.output)
    with _Edit(finished, "testbeds/single.py", "Final reward:", "Final payoff:"):
        jobs, out = _dry_run(finished)
    ran = set(jobs)
    # the testbed's players (evaluations, rollouts) and everything downstream of them, and the
    # training jobs (their params schema, config.py, takes its testbed defaults from the testbeds);
    # the model, the training params and the preference pairs do not move: `align pairs` builds its
    # prompts from the items (tipping.scenarios) and never runs the single testbed's code
    assert ran == set(everything) - {"prepare_model", "write_training_params", "make_preference_pairs"}, sorted(ran)
    assert len(jobs["evaluate_policy"]) == len(everything["evaluate_policy"])
    assert len(jobs["rollout_episodes"]) == len(everything["rollout_episodes"])
    # the round-0 evaluations of the base model have no upstream job that reruns: their own code did it
    base = [w for w in jobs["evaluate_policy"] if w["defence"] == "none" and w["round"] == "0"]
    assert base and "Params have changed since last execution" in out


def test_tables_change_reruns_only_aggregate_and_downstream(finished):
    with _Edit(finished, "analysis/tables.py", None, "\nEDITED = True  # a code change only the tables run\n"):
        jobs, _ = _dry_run(finished)
    assert set(jobs) == DOWNSTREAM_OF_TABLES, sorted(jobs)
    # reverting the edit (a new mtime, the old content) leaves nothing to do: the trigger is content
    jobs, out = _dry_run(finished)
    assert "Nothing to be done" in out and not jobs


def _declared(workdir: Path) -> dict[str, str]:
    """Output path -> rule, for every job of the DAG, as Snakemake reports it (`--summary`)."""
    proc = snakemake(workdir, "--summary", "all", "--configfile", CI, timeout=300)
    declared = {}
    for line in proc.stdout.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0].startswith(CI_RESULTS):
            declared[os.path.normpath(fields[0])] = fields[2]
    return declared


def test_every_file_a_job_writes_is_declared(ci_run):
    declared = _declared(ci_run.workdir)
    assert {"aggregate", "make_preference_pairs", "filter_trajectories", "evaluate_policy"} <= set(declared.values())
    folders = [p for p in declared if (ci_run.workdir / p).is_dir()]  # directory() outputs cover their contents
    base = ci_run.workdir / CI_RESULTS
    undeclared = []
    for path in sorted(base.rglob("*")):
        rel = os.path.normpath(path.relative_to(ci_run.workdir))
        if path.is_dir() or path.relative_to(base).parts[0] in NOT_RUN_FILES:
            continue
        if rel not in declared and not any(rel.startswith(folder + os.sep) for folder in folders):
            undeclared.append(rel)
    assert not undeclared, f"files written but declared by no rule: {undeclared}"
    missing = [p for p in declared if not (ci_run.workdir / p).exists()]
    assert not missing, f"declared but not written: {missing}"
