"""The DAG as built from params.yaml (dry runs: no job runs, no model loads), lint, profiles, paths."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from smk_helpers import ROOT, VENV_BIN, copy_workflow, dry_run_jobs, env, jobs_ran, snakemake

from tipping import paths
from tipping.config import Params

ROUND_RULES = ("rollout_episodes", "score_rewards", "filter_trajectories", "finetune_policy", "evaluate_policy")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("dag"))


def test_paper_dry_run_loads_no_model_and_has_every_round(workdir, tmp_path):
    # building the DAG must not touch the model stack: a `torch` that cannot be imported proves it
    # (deterministic, unlike a time limit; the time is printed for the record)
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('building the DAG must not import torch')\n")
    e = env(workdir)
    e["PYTHONPATH"] = f"{tmp_path}:{e['PYTHONPATH']}"
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "snakemake", "-n", "all"],
        cwd=workdir,
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"\npaper DAG dry run: {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (workdir / "results").exists()  # nothing ran
    p = Params.from_files(ROOT / "params.yaml")
    jobs = dry_run_jobs(proc.stdout + proc.stderr)
    rounds = range(1, p.evolution.rounds + 1)
    chains = [(m, d, t, str(s)) for m in p.models for d in p.defences for t in p.testbeds for s in p.seeds]
    for rule in ROUND_RULES:
        have = {(w["model"], w["defence"], w["testbed"], w["seed"], w["round"]) for w in jobs[rule]}
        for chain in chains:
            for r in rounds:
                assert (*chain, str(r)) in have, f"{rule} has no job for {chain} round {r}"
    # round 0 (the aligned policy) is evaluated too, and every evaluation comes with its controls
    evals = {
        (w["model"], w["defence"], w["testbed"], w["seed"], w["round"], w["condition"]) for w in jobs["evaluate_policy"]
    }
    for chain in chains:
        for r in range(p.evolution.rounds + 1):
            for c in p.conditions(chain[2]):
                assert (*chain, str(r), c) in evals
    assert {"control_no_feedback", "control_supervised", "control_swapped"} <= {
        w["condition"] for w in jobs["evaluate_policy"]
    }
    assert len(jobs["align_policy"]) == len(p.models) * 2 * len(p.testbeds)  # dpo and grpo
    assert len(jobs["prepare_model"]) == len(p.models)
    assert len(jobs["aggregate"]) == 1
    assert {f"plot_{f}" for f in p.report.figures} <= set(jobs)


def test_rounds_chain_adapters(workdir):
    """Round r's rollout is played by round r-1's policy; its finetune continues r-1's adapter."""
    proc = snakemake(workdir, "-n", "-p", "all", timeout=60)
    text = proc.stdout + proc.stderr
    r1 = "results/paper/adapters/qwen3-8b/dpo/single/s0/r1"
    assert f"--init-adapter {r1} --data results/paper/filtered/qwen3-8b/dpo/single/s0/r2/kept.jsonl" in text
    assert (
        "--init-adapter results/paper/align/qwen3-8b/dpo/single/adapter --data "
        "results/paper/filtered/qwen3-8b/dpo/single/s0/r1/kept.jsonl"
    ) in text
    assert f"--policy vllm:results/paper/models/qwen3-8b@{r1} --decision generate" in text
    # defence none: round 1 starts from the base model (no adapter, no --init-adapter)
    assert (
        "--model results/paper/models/llama-3.1-8b-instruct  --data "
        "results/paper/filtered/llama-3.1-8b-instruct/none/multi/s2/r1/kept.jsonl"
    ) in text
    # the position-bias control, and only it, lists the answers in swapped order
    p = Params.from_files(ROOT / "params.yaml")
    chains = len(p.models) * len(p.defences) * len(p.seeds) * (p.evolution.rounds + 1)
    swapped = chains * sum("control_swapped" in p.conditions(t) for t in p.testbeds)
    assert text.count("--option-order swapped") == swapped


@pytest.mark.parametrize("overlay", [None, "config/study.yaml", "config/demo.yaml", "config/ci.yaml"])
def test_lint_clean(workdir, overlay):
    proc = snakemake(workdir, "--lint", *(["--configfile", overlay] if overlay else []), timeout=60)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_rules_are_snakefmt_clean():
    proc = subprocess.run(
        [str(VENV_BIN / "snakefmt"), "--check", "Snakefile", "workflow/", "tests/workflow/overlay/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("overlay", ["config/study.yaml", "config/demo.yaml", "config/ci.yaml"])
def test_overlay_dags(workdir, overlay):
    proc = snakemake(workdir, "-n", "all", "--configfile", overlay, timeout=60)
    jobs = dry_run_jobs(proc.stdout + proc.stderr)
    p = Params.from_files(ROOT / "params.yaml", ROOT / overlay)
    assert all(w["round"] in {str(r) for r in range(1, p.evolution.rounds + 1)} for w in jobs["finetune_policy"])
    count = sum(len(v) for v in jobs.values())
    if "ci" in overlay:
        assert count < 40  # seconds per job: the workflow tests run it several times
    else:  # a reduction of the paper's grid
        paper = dry_run_jobs(snakemake(workdir, "-n", "all", timeout=60).stdout)
        assert count < sum(len(v) for v in paper.values()) / 4


def test_slurm_profile_requests_gpus_and_scales_memory(workdir):
    proc = snakemake(workdir, "-n", "--profile", str(ROOT / "workflow/profiles/slurm"), "all", timeout=60)
    text = proc.stdout + proc.stderr
    for rule in ("make_preference_pairs", "align_policy", "rollout_episodes", "finetune_policy", "evaluate_policy"):
        block = text[text.index(f"rule {rule}:") :]
        resources = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
        assert "slurm_partition=gpu" in resources and "gpu=1" in resources, (rule, resources)
    profile = (ROOT / "workflow/profiles/slurm/config.yaml").read_text()
    # memory scales with the attempt in the rules' plan resources (tests/workflow/test_plan_refusal.py
    # checks they equal the plan's); a profile constant for a model rule would override them
    assert re.search(r"retries: [1-9]", profile)
    for rule in ("make_preference_pairs", "align_policy", "rollout_episodes", "finetune_policy", "evaluate_policy"):
        assert re.search(rf"^  {rule}: {{slurm_partition: \"gpu\"}}$", profile, re.M), rule
    assert jobs_ran(text)


def test_make_setup_profile_links_resolve(workdir, tmp_path):
    """install.sh (run by make setup) makes `snakemake --profile slurm` resolve by name."""
    e = env(workdir) | {"XDG_CONFIG_HOME": str(tmp_path)}
    subprocess.run(["bash", str(ROOT / "workflow/profiles/install.sh")], check=True, env=e)
    for name in ("local", "slurm", "slurm-ci"):
        assert (tmp_path / "snakemake" / name / "config.yaml").is_file()
    proc = subprocess.run(
        [
            str(ROOT / ".venv/bin/snakemake") if (ROOT / ".venv/bin/snakemake").exists() else "snakemake",
            "--profile",
            "slurm",
            "-n",
            "all",
        ],
        cwd=workdir,
        env=e,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Using profile slurm" in proc.stdout + proc.stderr


def test_paths_have_one_wildcard_order_and_no_timestamps():
    order = list(paths.WILDCARDS)
    for pattern in (
        paths.rollout_run("R"),
        paths.scored("R"),
        paths.kept("R"),
        paths.evolved_adapter("R"),
        paths.eval_run("R"),
    ):
        found = re.findall(r"\{(\w+)\}", pattern)
        assert found == [w for w in order if w in found], pattern
    assert (
        paths.eval_run("results/x", "m", "dpo", "single", 2, 3, "treatment")
        == "results/x/evals/m/dpo/single/s2/r3/treatment"
    )
    assert paths.policy_adapter("R", "m", "none", "single", 0, 0) is None
    assert paths.policy_adapter("R", "m", "grpo", "multi", 0, 0) == paths.aligned_adapter("R", "m", "grpo", "multi")
    assert paths.policy_adapter("R", "m", "none", "single", 1, 2) == paths.evolved_adapter(
        "R", "m", "none", "single", 1, 2
    )
    snakefile = (ROOT / "Snakefile").read_text()
    assert "model / defence / testbed / seed / round / condition" in snakefile
    rules = "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    assert "{wildcards." not in rules  # wildcards reach shell commands through params only
    assert "datetime" not in rules and "time.time" not in rules
