"""At DAG build, a batch whose KV cache cannot fit runtime.gpu_memory_gb stops snakemake with one line."""

from __future__ import annotations

import yaml

from smk_helpers import ROOT, copy_workflow, jobs_ran, snakemake


def test_a_batch_that_cannot_fit_stops_snakemake_before_any_job(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    paper = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper["model_settings"]["qwen3-8b"].update(backend="transformers", batch_size=64)
    del paper["model_settings"]["qwen3-8b"]["max_model_len"]
    (work / "params.yaml").write_text(yaml.safe_dump(paper, sort_keys=False))
    proc = snakemake(work, "-n", "all", check=False, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "params.yaml: model_settings.qwen3-8b.batch_size 64: evaluate_policy, rollout_episodes and make_preference_pairs "
        "need 360 GiB of KV cache at 40,960 tokens a turn (max_model_len, else the model's context); at most 10 fit "
        "next to the 15 GiB of weights in 90% of 80 GiB (runtime.gpu_memory_gb)")
    assert jobs_ran(proc.stdout + proc.stderr) == []
