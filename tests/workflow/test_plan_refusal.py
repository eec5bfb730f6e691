"""At DAG build, a batch whose KV cache cannot fit runtime.gpu_memory_gb (params, or the profile's
`config:`) stops snakemake with one line; the model jobs' SLURM resources are the plan's."""

from __future__ import annotations

import yaml
from smk_helpers import CI, ROOT, copy_workflow, jobs_ran, snakemake

GPU_RULES = {
    "make_preference_pairs",
    "align_policy",
    "rollout_episodes",
    "finetune_policy",
    "evaluate_policy",
    "population_run",
    "population_probe",
}


def test_a_batch_that_cannot_fit_stops_snakemake_before_any_job(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    paper = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper["model_settings"]["qwen3-8b"].update(backend="transformers", batch_size=64)
    del paper["model_settings"]["qwen3-8b"]["max_model_len"]
    (work / "params.yaml").write_text(yaml.safe_dump(paper, sort_keys=False))
    proc = snakemake(work, "-n", "all", check=False, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "params.yaml: model_settings.qwen3-8b.batch_size 64: evaluate_policy, rollout_episodes and "
        "make_preference_pairs need 738 GiB of KV cache (with the transformers backend's prefix trie: 131,072 "
        "tokens + the batch's prompts) at 40,960 tokens a turn (max_model_len, else the model's context); at most "
        "3 fit next to the 15 GiB of weights in 90% of 80 GiB (runtime.gpu_memory_gb)"
    )
    assert jobs_ran(proc.stdout + proc.stderr) == []


def test_the_profile_names_the_site_gpu_memory_the_check_uses(tmp_path):
    """A profile's `config:` (runtime.gpu_memory_gb) reaches the DAG-build check: the shipped batch of 8
    fits 80 GiB, not a 24 GiB GPU."""
    work = copy_workflow(tmp_path / "wf")
    small = work / "workflow/profiles/small"
    small.mkdir()
    (small / "config.yaml").write_text(yaml.safe_dump({"cores": 1, "config": {"runtime": {"gpu_memory_gb": 24}}}))
    proc = snakemake(work, "-n", "all", "--profile", str(small), check=False, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "params.yaml+--config: model_settings.qwen3-8b.batch_size 8: evaluate_policy, rollout_episodes and "
        "make_preference_pairs need 45 GiB of KV cache at 40,960 tokens a turn (max_model_len, else the model's "
        "context); at most 1 fit next to the 15 GiB of weights in 90% of 24 GiB (runtime.gpu_memory_gb)"
    )
    assert jobs_ran(proc.stdout + proc.stderr) == []


def test_model_jobs_get_the_plans_resources(tmp_path):
    """Each model job's mem_mb / gpu / runtime under the SLURM profile are tipping.plan's numbers for
    that job (the profile sets only the partition); other rules keep the profile's defaults."""
    from tipping import plan
    from tipping.cli import parse_args
    from tipping.config import Params

    work = copy_workflow(tmp_path / "wf")
    proc = snakemake(work, "-n", "all", "--configfile", CI, "--profile", "workflow/profiles/slurm", timeout=600)
    p = Params.from_files(
        ROOT / "params.yaml", ROOT / CI, overrides=plan.profile_config("slurm", ROOT / "workflow/profiles")
    )
    rows = plan.rows(p, *plan.site(p), parse=parse_args)
    seen = set()
    rule, wildcards = None, {}
    for line in proc.stdout.splitlines():
        s = line.strip()
        if s.startswith("rule ") and s.endswith(":"):
            rule, wildcards = s[5:-1], {}
        elif s.startswith("wildcards:"):
            wildcards = dict(kv.split("=", 1) for kv in s[len("wildcards:") :].strip().split(", "))
        elif s.startswith("resources:"):
            got = dict(kv.split("=", 1) for kv in s[len("resources:") :].strip().split(", "))
            if rule in GPU_RULES:
                want = plan.job_resources(plan.job_row(rows, rule, wildcards))
                assert (int(got["mem_mb"]), int(got["gpu"]), int(got["runtime"])) == (
                    want["mem_mb"],
                    want["gpu"],
                    want["runtime"],
                ), (rule, wildcards)
                assert got["slurm_partition"] == "gpu"
                seen.add(rule)
            elif rule == "aggregate":
                assert got["mem_mb"] == "16000" and "gpu" not in got
    assert seen == GPU_RULES
