"""Helpers of the workflow tests: real `snakemake` (and `dvc`) on a temporary copy of the workflow.

Nothing is written into the repository: every test copies the Snakefile, workflow/, params.yaml,
config/ and src/ into a temporary folder and runs there (results/, .snakemake/ and logs stay there),
with the copy's src/ first on PYTHONPATH: its rules run (and hash, tipping.codehash) the copy's code,
so a test can edit it.
The tiny CI run (config/ci.yaml) is made once per session and shared by the tests that only read it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("Snakefile", "params.yaml", "config", "workflow", "src")
CI = "config/ci.yaml"
CI_RESULTS = "results/ci"
LOCAL = "workflow/profiles/local"
OVERLAY = Path(__file__).resolve().parent / "overlay"  # test-only workflow pieces, never in the paper's DAG
PROBE_DONE = f"{CI_RESULTS}/checks/fail_once.done"  # the probe job's output under the ci config
# the tipping commands the CI DAG calls (the contract of the rules); a missing one fails the run tests
CI_COMMANDS = (
    ("model", "prepare"),
    ("align", "pairs"),
    ("align", "dpo"),
    ("run", "single"),
    ("evolve", "score"),
    ("evolve", "filter"),
    ("evolve", "finetune"),
    ("tables",),
    ("plot",),
    ("viewer",),
)


def env(workdir: Path | None = None) -> dict:
    """The environment of a run in `workdir`: this venv, offline, and workdir/src (when there is one)
    first on PYTHONPATH, so that the copy's code is what Snakemake hashes and the rules run."""
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e.get('PATH', '')}"  # the rules' `python -m tipping` is this venv's
    if workdir is not None and (Path(workdir) / "src" / "tipping").is_dir():
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(workdir).resolve() / "src"), e.get("PYTHONPATH")]))
    e.update(
        OMP_WAIT_POLICY="PASSIVE",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONDONTWRITEBYTECODE="1",
    )
    e.pop("SNAKEMAKE_PROFILE", None)
    return e


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"), dirs_exist_ok=True
            )
        else:
            shutil.copy2(src, dest / name)
    return dest


def add_probe(workdir: Path) -> None:
    """Add the test-only probe_fail_once rule (overlay/probe.smk) to a workflow copy."""
    shutil.copy2(OVERLAY / "probe.smk", workdir / "workflow" / "rules" / "probe.smk")
    with open(workdir / "Snakefile", "a") as snakefile:
        snakefile.write('\n\ninclude: "workflow/rules/probe.smk"\n')


def hold_env(workdir: Path, hold_out: str, held: Path) -> dict:
    """env() for a run whose job writing `--out hold_out` finishes its command, then writes `held`
    and hangs until killed (overlay/bin/python goes first on PATH as the jobs' `python`)."""
    e = env(workdir)
    e.update(
        PATH=f"{OVERLAY / 'bin'}{os.pathsep}{e['PATH']}",
        TIPPING_TEST_PYTHON=str(VENV_BIN / "python"),
        TIPPING_TEST_HOLD_OUT=hold_out,
        TIPPING_TEST_HOLD_FILE=str(held),
    )
    return e


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
    cmd = [str(VENV_BIN / "python"), "-m", "snakemake", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env(workdir), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def run_files(workdir: Path, name: str = "records.jsonl") -> dict[str, bytes]:
    """Every run folder's `name` under results/ci (evaluations and rollouts), by relative path."""
    base = workdir / CI_RESULTS
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.glob(f"*/**/{name}"))
        if p.parts[len(base.parts)] in ("evals", "rollouts")
    }


def jobs_ran(output: str) -> list[str]:
    """Rule names of the jobs a snakemake run (or dry run) lists, in order."""
    rules = []
    for line in output.splitlines():
        line = line.strip()
        for prefix in ("localrule ", "rule "):
            if line.startswith(prefix) and line.endswith(":"):
                rules.append(line[len(prefix) : -1])
    return rules


def dry_run_jobs(output: str) -> dict[str, list[dict]]:
    """rule -> the wildcards of each of its jobs, from `snakemake -n` output."""
    jobs, rule = defaultdict(list), None
    for line in output.splitlines():
        s = line.strip()
        m = re.fullmatch(r"(?:local)?rule (\w+):", s)
        if m:
            rule = m.group(1)
            jobs[rule].append({})
        elif rule and s.startswith("wildcards:"):
            jobs[rule][-1] = dict(kv.split("=", 1) for kv in s[len("wildcards:") :].strip().split(", "))
    return jobs


def require_commands() -> None:
    missing = []
    for words in CI_COMMANDS:
        proc = subprocess.run(
            [str(VENV_BIN / "python"), "-m", "tipping", *words, "--help"], capture_output=True, text=True, env=env()
        )
        if proc.returncode != 0:
            missing.append(" ".join(words))
    if missing:
        pytest.fail("the CI DAG calls commands that `tipping` does not have yet: " + ", ".join(missing))
