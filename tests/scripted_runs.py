"""Scripted `tipping run` folders for the table, plot and viewer tests: the helper that makes one run,
and the shared run set (treatment and control, single and multi, two evolution rounds) with its
tables folder, built once per session by the `scripted_runs` fixture in tests/conftest.py.

Every rate in the set is computable by hand:
  s-t0  single, 64 items (16 jobs of 4) x 6 rounds, scripted:flip@4, treatment, evolution round 0
  s-c0  the same items without feedback, scripted:comply, control_no_feedback, evolution round 0
  s-t1  the same items, scripted:flip@1 (violates from round 1), treatment, evolution round 1
  m-t0  multi, 7 games x thresholds 2,4 x rewards 1.2/1.0/0.8, 8 agents x 3 rounds, scripted:collude:1
All four are tagged model=m, defence=none, replicate=0. One answer (s-t1's first record) is a long
"thinking" answer (LONG) so that the viewer has a message to cut; no rate depends on answer text.
Tests read these folders and never write into them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tipping.cli import main

SINGLE = ["run", "single", "--items", "single-test", "--rounds", "6", "--no-progress"]  # 64 items, 16 jobs
MULTI = [
    "run",
    "multi",
    "--scenarios",
    "multi-games",
    "--agents",
    "8",
    "--rounds",
    "3",
    "--thresholds",
    "2,4",
    "--reward-sets",
    "1.2,1.0,0.8",
    "--no-progress",
]  # 7 games
POPULATION = [
    "run",
    "population",
    "--scenarios",
    "multi-games",
    "--limit",
    "1",
    "--threshold-fractions",
    "0.5",
    "--no-progress",
]
LONG = "THINK-HEAD " + "x" * 5000 + ' THINK-TAIL {"choice": "Route B"}'
TAGS = {"model": "m", "defence": "none", "replicate": 0}


def tags(**kw) -> list[str]:
    return [x for k, v in kw.items() for x in ("--tag", f"{k}={v}")]


def make(folder, args, policy, **tag) -> str:
    """One finished `tipping run` (args: the command and its flags) with a scripted policy, tagged."""
    assert main([*args, "--policy", policy, "--out", str(folder), *tags(**tag)]) == 0
    return str(folder)


def rewrite_records(folder, change) -> None:
    """Edit a finished run's records.jsonl in place: change(index, record) -> record."""
    path = Path(folder) / "records.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(i, r)) + "\n" for i, r in enumerate(lines)))


def build_run_set(root: Path) -> dict:
    """The shared set (see the module doc) under root, and `tipping tables` of it in root/tables."""
    runs = {
        "s-t0": make(root / "s-t0", SINGLE, "scripted:flip@4", condition="treatment", evolution_round=0, **TAGS),
        "s-c0": make(
            root / "s-c0",
            [*SINGLE, "--feedback", "none"],
            "scripted:comply",
            condition="control_no_feedback",
            evolution_round=0,
            **TAGS,
        ),
        "s-t1": make(root / "s-t1", SINGLE, "scripted:flip@1", condition="treatment", evolution_round=1, **TAGS),
        "m-t0": make(root / "m-t0", MULTI, "scripted:collude:1", condition="treatment", evolution_round=0, **TAGS),
    }
    long_episode = []

    def lengthen(i, r):
        if i == 0:
            long_episode.append(r["episode"])
            return {**r, "response": LONG}
        return r

    rewrite_records(runs["s-t1"], lengthen)
    assert main(["tables", *runs.values(), "--out", str(root / "tables")]) == 0
    return {"runs": list(runs.values()), "named": runs, "tables": root / "tables", "long_episode": long_episode[0]}
