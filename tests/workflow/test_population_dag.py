"""The population part of the DAG (issue 13): params.population validated with one-line errors, the
CI overlay's jobs, and the rule arguments being a valid `tipping run population` plan."""

from __future__ import annotations

import copy

import pytest
import yaml
from smk_helpers import CI, ROOT, copy_workflow, dry_run_jobs, snakemake

from tipping import pipeline
from tipping.cli import build_parser
from tipping.config import Params
from tipping.errors import InputError
from tipping.runs import population_plan


@pytest.fixture(scope="module")
def paper() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_paper_dag_has_no_population_jobs_until_networks_are_listed(paper):
    assert Params.load(paper).population.networks == []


@pytest.mark.parametrize(
    "population,field,message",
    [
        ({"networks": ["ring:k=3"]}, "population.networks.0", "--network"),
        ({"networks": ["ring:k=4"], "agents": [4]}, "population.networks.0", "with 4 agents"),
        ({"networks": ["complete"], "agents": [2]}, "population.agents.0", "4..1024"),
        ({"networks": ["complete"], "fractions": [0.1, 1.0]}, "population.fractions.1", "free agent"),
        ({"networks": ["complete", "complete"]}, "population.networks.1", "listed twice"),
        ({"networks": ["complete"], "placements": ["central"]}, "population.placements.0", ""),
        ({"networks": ["complete"], "seeds": [1, 1]}, "population.seeds.1", "listed twice"),
    ],
)
def test_bad_population_params_are_one_line(paper, population, field, message):
    data = copy.deepcopy(paper)
    data["population"] = {**data["population"], **population}
    with pytest.raises(InputError) as err:
        Params.load(data)
    text = str(err.value)
    assert f"field {field}" in text and message in text and "\n" not in text


def test_ci_overlay_plans_population_runs_probe_and_report(tmp_path):
    p = Params.from_files(ROOT / "params.yaml", ROOT / CI)
    workdir = copy_workflow(tmp_path)
    proc = snakemake(workdir, "-n", "all", "--configfile", CI)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = dry_run_jobs(proc.stdout + proc.stderr)
    pop = p.population
    want = {
        (m, pop.slug(net), str(n), f"{f:g}", pl, str(s))
        for m in p.models
        for net in pop.networks
        for n in pop.agents
        for f in pop.fractions
        for pl in pop.placements
        for s in p.seeds
    }
    have = {
        (w["model"], w["network"], w["agents"], w["fraction"], w["placement"], w["seed"])
        for w in jobs["population_run"]
    }
    assert have == want and len(want) == 2
    assert len(jobs["population_probe"]) == len(jobs["population_report"]) == len(p.models)
    # what a job runs is a valid plan: the spec, the confederate count, the rounds
    for _, slug, n, f, placement, seed in sorted(want):
        args = build_parser().parse_args(
            [
                "run",
                "population",
                *pipeline.population_args(p, slug, n, f),
                "--placement",
                placement,
                "--seed",
                seed,
                "--policy",
                "scripted:comply",
                "--out",
                "x",
            ]
        )
        _episodes, config, _ = population_plan(args)
        assert config["network"] == pop.network_of(slug) and config["rounds"] == pop.rounds
        assert len(config["confederate_agents"]) == round(float(f) * int(n))


def test_population_seeds_replicate_the_population_runs_only(tmp_path):
    """population.seeds gives the curve its own replicates; the evaluation chains keep `seeds`."""
    workdir = copy_workflow(tmp_path)
    (workdir / "more.yaml").write_text("population: {seeds: [3, 5]}\n")
    proc = snakemake(workdir, "-n", "all", "--configfile", CI, "more.yaml")
    jobs = dry_run_jobs(proc.stdout + proc.stderr)
    assert {w["seed"] for w in jobs["population_run"]} == {"3", "5"}
    assert len(jobs["population_run"]) == 4
    assert {w["seed"] for w in jobs["evaluate_policy"]} == {
        str(s) for s in Params.from_files(ROOT / "params.yaml", ROOT / CI).seeds
    }
