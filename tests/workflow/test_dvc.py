"""DVC around the Snakemake DAG (dvc.yaml, stage `run@ci`), in a temporary git repo with its own remote.

`dvc repro` after a param change, and after a code change, reruns only the affected rules; push,
fresh clone, pull, `snakemake --touch --forceall`, then `snakemake -n` has nothing to do and the
figures are byte-identical. A fresh clone pulls the same way from a read-only HTTP remote (loopback,
dvc-http) while the writable remote lives in the untracked .dvc/config.local. The repos are seeded
with the session's CI run (results + Snakemake metadata), so nothing is recomputed.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dvc.repo import Repo
from smk_helpers import CI, CI_RESULTS, ROOT, VENV_BIN, copy_workflow, dry_run_jobs, env, jobs_ran, snakemake

pytestmark = pytest.mark.slow

STAGE = "run@ci"  # dvc.yaml: the `run` template's ci item


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


def seeded_repo(ci_run, repo: Path) -> Path:
    """A git + DVC repository of the workflow holding the session's finished CI run and Snakemake's
    provenance of it (mtimes preserved), with the shipped .dvc/config; nothing committed yet."""
    copy_workflow(repo)
    (repo / "scripts").mkdir()
    for name in ("dvc.yaml", ".dvcignore", "scripts/results_section.py"):  # the last: a dep of every `run` item
        shutil.copy2(ROOT / name, repo / name)
    (repo / ".gitignore").write_text(
        "/results/*/logs/\n/results/*/benchmarks/\n/results/*/cache/\n/results/*/checks/\n.snakemake/\n__pycache__/\n"
    )
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copytree(ci_run.workdir / CI_RESULTS, repo / CI_RESULTS)
    shutil.copytree(
        ci_run.workdir / ".snakemake", repo / ".snakemake", ignore=shutil.ignore_patterns("locks", "incomplete", "log")
    )
    return repo


def test_dvc_param_change_and_push_pull_roundtrip(ci_run, tmp_path):
    repo = seeded_repo(ci_run, tmp_path / "repo")
    remote = tmp_path / "remote"
    dvc(repo, "remote", "modify", "local", "url", str(remote))  # the shipped default remote, pointed here

    out = dvc(repo, "repro", STAGE)
    assert "Nothing to be done" in out and jobs_ran(out) == []
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "ci results")
    assert "up to date" in dvc(repo, "status", STAGE)

    # a param change: keep every kept turn (filter fraction 0.5 -> 1.0)
    ci = (repo / CI).read_text()
    (repo / CI).write_text(ci.replace("  rollout: {limit: 2}", "  rollout: {limit: 2}\n  filter: {fraction: 1.0}"))
    status = dvc(repo, "status", STAGE)
    assert "config/ci.yaml" in status and "evolution" in status
    out = dvc(repo, "repro", STAGE)
    ran = jobs_ran(out)
    assert set(ran) - {"all"} == {
        "filter_trajectories",
        "finetune_policy",
        "evaluate_policy",
        "aggregate",
        "plot_single_rounds",
        "plot_evolution",
        "build_viewer",
    }, ran
    assert {w["round"] for w in dry_run_jobs(out)["evaluate_policy"]} == {"1"}  # round 0 is untouched
    assert "up to date" in dvc(repo, "status", STAGE)

    # a code change that only the tables run: DVC sees src/tipping change, and the Snakemake it runs
    # reruns exactly aggregate and what reads the tables (the rules' code-hash params)
    tables_py = repo / "src" / "tipping" / "analysis" / "tables.py"
    tables_py.write_text(tables_py.read_text() + "\nEDITED = True  # a code change only the tables run\n")
    assert "src/tipping" in dvc(repo, "status", STAGE)
    ran = jobs_ran(dvc(repo, "repro", STAGE))
    assert set(ran) - {"all"} == {
        "aggregate",
        "plot_single_rounds",
        "plot_evolution",
        "build_viewer",
        "population_report",
    }, ran
    assert "up to date" in dvc(repo, "status", STAGE)
    dry = snakemake(repo, "-n", "all", "--configfile", CI)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "filter fraction 1.0, a tables code change")
    dvc(repo, "push", STAGE)

    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    dvc(clone, "pull", STAGE)
    assert "up to date" in dvc(clone, "status", STAGE)
    snakemake(clone, "--touch", "--forceall", "--cores", "1", "all", "--configfile", CI)
    dry = snakemake(clone, "-n", "all", "--configfile", CI)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    figures = sorted((repo / CI_RESULTS / "figures").iterdir())
    assert figures
    for fig in figures:
        assert (clone / CI_RESULTS / "figures" / fig.name).read_bytes() == fig.read_bytes(), fig.name
    # and DVC reads the declared metrics / plots
    assert "summary.json" in dvc(clone, "metrics", "show")


@contextmanager
def http_remote(folder: Path):
    """Serve a DVC remote read-only over loopback HTTP (GET/HEAD only, like a static file host);
    yields its URL and the paths requested."""
    served = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # quiet; record what was fetched instead
            served.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def files_under(root: Path, outs: list[str]) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for out in outs for p in sorted((root / out).rglob("*")) if p.is_file()
    }


def test_fresh_clone_pulls_over_http_and_has_nothing_to_do(ci_run, tmp_path):
    """The published-project setup: the committed .dvc/config names a read-only HTTP(S) remote as the
    default, the maintainer's writable remote lives in the untracked .dvc/config.local. A fresh clone
    pulls the CI results over loopback HTTP, byte-identical, and neither DVC nor Snakemake has
    anything to recompute; pushing to the HTTP remote fails."""
    repo = seeded_repo(ci_run, tmp_path / "repo")
    store = tmp_path / "store"
    with Repo(str(repo)) as dvc_repo:  # the stage as DVC resolves it: outs, metrics and plots
        outs = [str(o.def_path) for o in dvc_repo.stage.collect(STAGE)[0].outs]
    with http_remote(store) as (url, served):
        dvc(repo, "remote", "add", "-d", "public", url)  # .dvc/config: what every clone reads
        dvc(repo, "remote", "add", "--local", "-d", "store", str(store))  # .dvc/config.local: the writer's
        dvc(repo, "commit", "-f", STAGE)  # dvc.lock for the seeded outputs, without running the DAG
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "ci results")
        assert ".dvc/config.local" not in git(repo, "ls-files", ".dvc")
        assert "up to date" in dvc(repo, "status", STAGE)
        dvc(repo, "push", STAGE)  # to the local default: the store

        clone = tmp_path / "clone"
        sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
        assert dvc(clone, "remote", "default").strip() == "public"
        # the small outputs (cache: false) came with git; records, parquet and adapters come with the pull
        assert (clone / CI_RESULTS / "figures" / "single_rounds.png").is_file()
        assert (clone / CI_RESULTS / "tables" / "rates.md").is_file()
        assert not (clone / CI_RESULTS / "tables" / "records.parquet").exists()
        assert not (clone / CI_RESULTS / "evals").exists()
        dvc(clone, "pull", STAGE)
        pulled = [p for p in served if p.startswith("/files/md5/")]
        assert pulled, "nothing came over HTTP"
        assert files_under(clone, outs) == files_under(repo, outs)  # every pulled file, byte for byte
        assert "up to date" in dvc(clone, "status", STAGE)
        snakemake(clone, "--touch", "--forceall", "--cores", "1", "all", "--configfile", CI)
        dry = snakemake(clone, "-n", "all", "--configfile", CI)
        assert "Nothing to be done" in dry.stdout + dry.stderr

        # read-only: a push from the clone (a changed cached folder) goes to the HTTP remote and is refused
        (clone / CI_RESULTS / "viewer" / "extra.txt").write_text("a change\n")
        dvc(clone, "commit", "-f", STAGE)
        before = sorted(store.rglob("*"))
        push = subprocess.run(
            [str(VENV_BIN / "dvc"), "push", STAGE],
            cwd=clone,
            env=env(clone),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert push.returncode != 0, push.stdout + push.stderr
        assert sorted(store.rglob("*")) == before
