"""The leakage audit (`tipping items check`): no evaluation prompt of the paper, demo or ci DAG
occurs in the training or rollout data upstream of it; the audit finds a leak when there is one;
and the jobs it audits are the DAG's own (their arguments read from `snakemake -n -p`)."""

from __future__ import annotations

import shlex

import pytest
import yaml
from smk_helpers import ROOT, copy_workflow, snakemake

from tipping import leakage, paths, pipeline
from tipping.cli import build_parser, main, parse_args
from tipping.config import Params
from tipping.scenarios import write_items
from tipping.scenarios.generator import make_split

PARSER = build_parser()
CONFIGS = {"paper": [], "study": ["config/study.yaml"], "demo": ["config/demo.yaml"], "ci": ["config/ci.yaml"]}
# what decides the items a job plays or trains on, and its seeds
ITEM_FIELDS = (
    "items",
    "scenarios",
    "items_seed",
    "limit",
    "seed",
    "agents",
    "thresholds",
    "reward_sets",
    "rounds",
    "window",
    "supervision",
    "feedback",
)


def params(config: str, *extra) -> Params:
    return Params.from_files(ROOT / "params.yaml", *(ROOT / f for f in CONFIGS[config]), *extra)


@pytest.mark.parametrize("config", CONFIGS)
def test_no_evaluation_prompt_occurs_upstream(config):
    p = params(config)
    rows = leakage.audit(p, parse_args)
    assert len(rows) == len(pipeline.policies(p))
    assert all(r["eval_prompts"] > 0 for r in rows)
    assert all(r["upstream"] for r in rows if r["round"] > 0 or r["defence"] != "none")  # never vacuous
    assert [r for r in rows if r["shared"]] == []


def test_the_check_command_prints_one_line_per_policy(capsys):
    assert (
        main(["items", "check", "--params", str(ROOT / "params.yaml"), "--configfile", str(ROOT / "config/demo.yaml")])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(pipeline.policies(params("demo"))) + 1
    assert lines[-1].startswith("ok:") and all(" 0 shared of " in line for line in lines[:-1])


def test_a_missing_params_file_is_one_line(tmp_path, capsys):
    assert main(["items", "check", "--params", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.yaml: file not found" in err and len(err.splitlines()) == 1


def _overlay(tmp_path, data: dict):
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_train_file_holding_test_items_is_found(tmp_path, capsys):
    write_items(make_split("single-test", 0)[:3], tmp_path / "train.jsonl")
    overlay = _overlay(tmp_path, {"single": {"train_items": str(tmp_path / "train.jsonl")}})
    assert (
        main(
            [
                "items",
                "check",
                "--params",
                str(ROOT / "params.yaml"),
                "--configfile",
                str(ROOT / "config/ci.yaml"),
                "--configfile",
                str(overlay),
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "tiny-qwen3 dpo single seed 0 round 0: 2 shared of 2" in out  # the pairs' items (ci: test limit 2)
    assert "tiny-qwen3 none single seed 0 round 0: 0 shared" in out  # nothing trained it
    assert out.splitlines()[-1].startswith("LEAK: 3 of 4")


def test_multi_rollouts_on_the_evaluation_games_are_found(tmp_path):
    """What the DAG did before: multi evolution rollouts played the evaluation games and grid."""
    p = params("paper", _overlay(tmp_path, {"defences": ["none"], "multi": {"train_items": "multi-games"}}))
    rows = [r for r in leakage.audit(p, parse_args) if r["testbed"] == "multi"]
    # 140 grid episodes, each in the paper's and in the swapped option order (control_swapped)
    assert {r["round"]: r["shared"] for r in rows if r["seed"] == 0 and r["model"] == "qwen3-8b"} == {
        0: 0,
        1: 280,
        2: 280,
        3: 280,
    }


def test_evaluation_items_drawn_with_the_replicate_seed_are_found(monkeypatch):
    """What the DAG did before: one --seed drew the evaluation split, so replicates 1 and 2 played
    prompts of the alignment data (drawn with dpo.seed 0)."""
    real = pipeline.eval_args

    def replicate_items(p, testbed, seed, condition):
        args = real(p, testbed, seed, condition)
        args[args.index("--items-seed") + 1] = str(seed)
        return args

    monkeypatch.setattr(pipeline, "eval_args", replicate_items)
    shared = {
        (r["defence"], r["seed"]): r["shared"]
        for r in leakage.audit(params("paper"), parse_args)
        if r["testbed"] == "single" and r["round"] == 0 and r["model"] == "qwen3-8b"
    }
    assert shared[("dpo", 0)] == shared[("grpo", 0)] == shared[("none", 1)] == 0
    assert shared[("dpo", 1)] > 0 and shared[("dpo", 2)] > 0 and shared[("grpo", 1)] > 0


# --- the audited jobs are the DAG's ------------------------------------------------------------


def _item_fields(argv: list[str]) -> tuple:
    """A `tipping` command line reduced to what chooses its items and seeds (read by its own parser)."""
    words = tuple(argv[:2])
    args = (
        PARSER.parse_args(argv)
        if "--out" in argv
        else leakage.parse_job(pipeline.Job("", words, tuple(argv[2:])), parse_args)
    )
    return words, tuple((k, str(getattr(args, k, None))) for k in ITEM_FIELDS)


def _dag_jobs(workdir, config: str, *targets: str) -> set:
    configfiles = ["--configfile", *CONFIGS[config]] if CONFIGS[config] else []
    proc = snakemake(workdir, *targets, "-n", "-p", "--forceall", *configfiles, timeout=120)
    found = set()
    for line in (proc.stdout + proc.stderr).splitlines():
        if "python -m tipping " not in line:
            continue
        argv = shlex.split(line.split("python -m tipping ", 1)[1].split(" > ", 1)[0])
        if tuple(argv[:2]) in (("run", "single"), ("run", "multi"), ("align", "pairs"), ("align", "grpo")):
            found.add(_item_fields(argv))
    return found


def _audit_jobs(jobs) -> set:
    return {_item_fields([*j.command, *j.args]) for j in jobs}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("leakage"))


@pytest.mark.parametrize("config", CONFIGS)
def test_the_audit_reads_every_job_of_the_dag(workdir, config):
    p = params(config)
    audited = set()
    for _model, defence, testbed, seed, round in pipeline.policies(p):
        audited |= _audit_jobs(pipeline.eval_jobs(p, testbed, seed))
        audited |= _audit_jobs(pipeline.training_jobs(p, defence, testbed, seed, round))
    assert _dag_jobs(workdir, config, "all") == audited


@pytest.mark.parametrize(
    "config, policy",
    [("paper", ("llama-3.1-8b-instruct", "grpo", "multi", 2, 3)), ("ci", ("tiny-qwen3", "dpo", "single", 0, 1))],
)
def test_the_jobs_upstream_of_an_evaluation_are_the_dags(workdir, config, policy):
    p = params(config)
    _model, defence, testbed, seed, round = policy
    target = paths.run_file(paths.eval_run(p.results, *policy, "treatment"), "metrics.json")
    expected = _audit_jobs(
        [
            pipeline.Job("evaluate_policy", ("run", testbed), tuple(pipeline.eval_args(p, testbed, seed, "treatment"))),
            *pipeline.training_jobs(p, defence, testbed, seed, round),
        ]
    )
    assert _dag_jobs(workdir, config, target) == expected
