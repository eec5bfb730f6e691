"""DVC around the Snakemake DAG (dvc.yaml, stage `ci`), in a temporary git repo with its own remote.

`dvc repro` after a param change, and after a code change, reruns only the affected rules; push,
fresh clone, pull, `snakemake --touch --forceall`, then `snakemake -n` has nothing to do and the
figures are byte-identical. The repo is seeded with the session's CI run (results + Snakemake metadata), so
the first `dvc repro` finds the DAG up to date instead of recomputing it.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from smk_helpers import CI, CI_RESULTS, ROOT, VENV_BIN, copy_workflow, dry_run_jobs, env, jobs_ran, snakemake

pytestmark = pytest.mark.slow


def sh(cwd, *cmd, check=True, timeout=1800) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env(cwd), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}")
    return out


def dvc(cwd, *args, **kw) -> str:
    return sh(cwd, str(VENV_BIN / "dvc"), *args, **kw)


def git(cwd, *args) -> str:
    return sh(cwd, "git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args)


def test_dvc_param_change_and_push_pull_roundtrip(ci_run, tmp_path):
    repo = copy_workflow(tmp_path / "repo")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(ROOT / name, repo / name)
    (repo / ".gitignore").write_text("/results/*/logs/\n/results/*/benchmarks/\n/results/*/cache/\n/results/*/checks/\n"
                                     ".snakemake/\n__pycache__/\n")
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # the shipped default remote ...
    remote = tmp_path / "remote"
    dvc(repo, "remote", "modify", "local", "url", str(remote))  # ... pointed at this test's folder
    # seed: the session's finished CI run and Snakemake's provenance of it (mtimes preserved)
    shutil.copytree(ci_run.workdir / CI_RESULTS, repo / CI_RESULTS)
    shutil.copytree(ci_run.workdir / ".snakemake", repo / ".snakemake",
                    ignore=shutil.ignore_patterns("locks", "incomplete", "log"))

    out = dvc(repo, "repro", "ci")
    assert "Nothing to be done" in out and jobs_ran(out) == []
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "ci results")
    assert "up to date" in dvc(repo, "status", "ci")

    # a param change: keep every kept turn (filter fraction 0.5 -> 1.0)
    ci = (repo / CI).read_text()
    (repo / CI).write_text(ci.replace("  rollout: {limit: 2}", "  rollout: {limit: 2}\n  filter: {fraction: 1.0}"))
    status = dvc(repo, "status", "ci")
    assert "config/ci.yaml" in status and "evolution" in status
    out = dvc(repo, "repro", "ci")
    ran = jobs_ran(out)
    assert set(ran) - {"all"} == {"filter_trajectories", "finetune_policy", "evaluate_policy", "aggregate",
                                  "plot_single_rounds", "plot_evolution", "build_viewer"}, ran
    assert {w["round"] for w in dry_run_jobs(out)["evaluate_policy"]} == {"1"}  # round 0 is untouched
    assert "up to date" in dvc(repo, "status", "ci")

    # a code change that only the tables run: DVC sees src/tipping change, and the Snakemake it runs
    # reruns exactly aggregate and what reads the tables (the rules' code-hash params)
    tables_py = repo / "src" / "tipping" / "analysis" / "tables.py"
    tables_py.write_text(tables_py.read_text() + "\nEDITED = True  # a code change only the tables run\n")
    assert "src/tipping" in dvc(repo, "status", "ci")
    ran = jobs_ran(dvc(repo, "repro", "ci"))
    assert set(ran) - {"all"} == {"aggregate", "plot_single_rounds", "plot_evolution", "build_viewer"}, ran
    assert "up to date" in dvc(repo, "status", "ci")
    dry = snakemake(repo, "-n", "all", "--configfile", CI)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "filter fraction 1.0, a tables code change")
    dvc(repo, "push", "ci")

    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    dvc(clone, "pull", "ci")
    assert "up to date" in dvc(clone, "status", "ci")
    snakemake(clone, "--touch", "--forceall", "--cores", "1", "all", "--configfile", CI)
    dry = snakemake(clone, "-n", "all", "--configfile", CI)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    figures = sorted((repo / CI_RESULTS / "figures").iterdir())
    assert figures
    for fig in figures:
        assert (clone / CI_RESULTS / "figures" / fig.name).read_bytes() == fig.read_bytes(), fig.name
    # and DVC reads the declared metrics / plots
    assert "summary.json" in dvc(clone, "metrics", "show")
