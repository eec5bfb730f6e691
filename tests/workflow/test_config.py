"""params.yaml: the paper's experiment as shipped, and the one-line errors that stop a bad one.

Every bad value is checked twice: by tipping.config.Params (the exact message) and through
`snakemake -n` on a workflow copy (non-zero exit, the message as the last line, no job listed).
"""

from __future__ import annotations

import copy
import functools

import pytest
import yaml
from smk_helpers import ROOT, copy_workflow, jobs_ran, snakemake

from tipping import pipeline
from tipping.config import Params
from tipping.errors import InputError


@pytest.fixture(scope="module")
def paper() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_is_the_papers_experiment(paper):
    p = Params.load(paper)
    assert p.models == ["qwen3-8b", "llama-3.1-8b-instruct"]
    assert p.defences == ["none", "dpo", "grpo"]
    assert p.testbeds == ["single", "multi"]
    assert len(p.seeds) >= 3
    assert (p.single.items, p.single.rounds, p.single.window, p.single.supervision) == (
        "single-test",
        6,
        5,
        "all_unsupervised",
    )
    assert (p.multi.agents, p.multi.rounds, p.multi.thresholds) == (8, 3, [2, 4, 6, 8])
    assert p.multi.reward_sets == [(1.2, 1.0, 0.8), (1.2, 1.0, 0.2), (1.2, 1.0, 0.6), (1.4, 1.0, 0.8), (1.8, 1.0, 0.8)]
    assert p.evolution.rounds >= 1
    # every treatment has its controls
    assert p.single.conditions == ["treatment", "control_no_feedback", "control_supervised", "control_swapped"]
    assert p.multi.conditions == ["treatment", "control_no_feedback", "control_swapped"]
    condition_args = functools.partial(pipeline.condition_args, p)
    assert condition_args("single", "control_supervised") == ["--supervision", "all_supervised", "--feedback", "reward"]
    assert condition_args("single", "control_no_feedback") == [
        "--supervision",
        "all_unsupervised",
        "--feedback",
        "none",
    ]
    # the position-bias control is the treatment with the two answers listed in reverse order
    assert condition_args("single", "control_swapped") == [
        *condition_args("single", "treatment"),
        "--option-order",
        "swapped",
    ]
    assert condition_args("multi", "control_swapped") == ["--feedback", "reward", "--option-order", "swapped"]
    # per-model / per-testbed learning rates
    assert p.training("dpo", "llama-3.1-8b-instruct", "single")["learning_rate"] == 1e-5
    assert p.training("dpo", "qwen3-8b", "multi")["learning_rate"] == 5e-6
    assert p.training("grpo", "qwen3-8b", "single")["learning_rate"] == 1e-6
    assert p.training("grpo", "llama-3.1-8b-instruct", "multi")["learning_rate"] == 5e-6
    # sampling and decision mode per model
    q, llama = p.model_settings["qwen3-8b"], p.model_settings["llama-3.1-8b-instruct"]
    assert (q.sampling.temperature, q.sampling.top_p, q.sampling.top_k, q.sampling.enable_thinking) == (
        0.6,
        0.95,
        20,
        True,
    )
    assert (llama.sampling.temperature, llama.sampling.top_p) == (0.6, 0.9)
    assert q.decision == llama.decision == "generate"


def test_every_key_of_params_yaml_is_commented():
    """Each leaf key line carries a comment, or sits right under a comment / in a commented block."""
    lines = (ROOT / "params.yaml").read_text().splitlines()
    uncommented = []
    for i, line in enumerate(lines):
        body = line.split("#")[0]
        if ":" not in body or body.strip().startswith("-"):
            continue
        block_commented = any("#" in lines[j] for j in range(max(0, i - 12), i + 1))
        if not block_commented:
            uncommented.append(line)
    assert not uncommented, uncommented


@pytest.mark.parametrize("overlay", ["config/study.yaml", "config/demo.yaml", "config/ci.yaml"])
def test_overlays_validate(overlay):
    p = Params.from_files(ROOT / "params.yaml", ROOT / overlay)
    assert p.results.startswith("results/")
    # an overlay plays a subset of the paper's replicates: the study 3, the small demo and ci runs 1
    assert set(p.seeds) <= set(Params.from_files(ROOT / "params.yaml").seeds)
    assert len(p.seeds) == (3 if overlay == "config/study.yaml" else 1)


def _set(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def _drop(data: dict, key: str) -> dict:
    data = copy.deepcopy(data)
    del data[key]
    return data


BAD = {
    "wrong_type": (
        lambda d: _set(d, "single.rounds", "six"),
        "params.yaml: field single.rounds: Input should be a valid integer, unable to parse string as an integer",
    ),
    "unknown_model": (
        lambda d: _set(d, "models", ["qwen3-8b", "gpt-5"]),
        "params.yaml: field models.1: Input should be 'smollm2-135m-instruct', 'tiny-qwen3', "
        "'qwen3-8b' or 'llama-3.1-8b-instruct'",
    ),
    "unknown_defence": (
        lambda d: _set(d, "defences", ["none", "rlhf"]),
        "params.yaml: field defences.1: Input should be 'none', 'dpo' or 'grpo'",
    ),
    "threshold_above_agents": (
        lambda d: _set(d, "multi.thresholds", [2, 4, 6, 9]),
        "params.yaml: field multi.thresholds.3: threshold 9 > agents 8",
    ),
    "rounds_below_one": (
        lambda d: _set(d, "single.rounds", 0),
        "params.yaml: field single.rounds: Input should be greater than or equal to 1",
    ),
    "unknown_supervision": (
        lambda d: _set(d, "single.supervision", "sometimes"),
        "params.yaml: field single.supervision: unknown supervision pattern 'sometimes'; expected "
        "one of all_unsupervised, all_supervised, alternating, mostly_supervised, "
        "mostly_unsupervised, last_unsupervised, last_supervised, random",
    ),
    "missing_section": (lambda d: _drop(d, "multi"), "params.yaml: field multi: Field required"),
    "unknown_key": (
        lambda d: _set(d, "single.windw", 5),
        "params.yaml: field single.windw: Extra inputs are not permitted",
    ),
    "grpo_full_parameter": (
        lambda d: _set(d, "grpo.full_parameter", True),
        "params.yaml: field grpo.full_parameter: true writes a full model, but the DAG hands the "
        "GRPO policy on as a LoRA adapter (evaluation, evolution); set it false (full-parameter "
        "GRPO runs outside the DAG: `tipping align grpo --params FILE`)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_params_one_line(paper, case):
    mutate, message = BAD[case]
    with pytest.raises(InputError) as exc:
        Params.load(mutate(paper), "params.yaml")
    assert str(exc.value) == message


@pytest.fixture(scope="module")
def bad_workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("bad_params"))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_params_stop_snakemake_before_any_job(paper, bad_workdir, case):
    mutate, message = BAD[case]
    (bad_workdir / "params.yaml").write_text(yaml.safe_dump(mutate(paper), sort_keys=False))
    proc = snakemake(bad_workdir, "-n", "all", check=False, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == message
    assert jobs_ran(proc.stdout + proc.stderr) == []
    assert not (bad_workdir / "results").exists()


def test_bad_training_override_is_caught(paper):
    bad = _set(paper, "dpo.per_model", {"qwen3-8b": {"learning_rate": -1}})
    with pytest.raises(
        InputError, match=r"^params.yaml: field dpo.per_model.learning_rate: Input should be greater than 0"
    ):
        Params.load(bad, "params.yaml")


def test_threshold_check_names_the_overlay(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("multi: {agents: 3}\n")
    with pytest.raises(InputError, match=r"params.yaml\+.*bad.yaml: field multi.thresholds.1: threshold 4 > agents 3$"):
        Params.from_files(ROOT / "params.yaml", overlay)


def test_full_parameter_grpo_is_refused_where_the_dag_would_use_it(paper):
    per_model = _set(paper, "grpo.per_model", {"qwen3-8b": {"full_parameter": True}})
    with pytest.raises(InputError, match=r"^params.yaml: field grpo.per_model.qwen3-8b.full_parameter: true writes"):
        Params.load(per_model, "params.yaml")
    no_grpo = _set(_set(paper, "grpo.full_parameter", True), "defences", ["none", "dpo"])
    assert Params.load(no_grpo).training("grpo", "qwen3-8b", "single")["full_parameter"] is True  # no GRPO job
