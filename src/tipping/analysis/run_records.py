"""Run folders (read by tipping.records.RunFolder) -> the records, prompts and messages frames that
tipping.analysis.tables builds on (and writes as records/prompts/messages.parquet).

Every turn gets its run's folder (`run`), the config fields RUN_FIELDS and the run's tags as
columns. A population run (`tipping run population`) also gets `neighbours`: each turn's agent's
neighbour ids on the run's graph (network.edgelist), sorted; the episode viewer lists them. Other
runs' turns have none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from tipping.errors import InputError
from tipping.records import RunFolder

RUN_FIELDS = ("testbed", "decision", "policy", "parser", "feedback")  # copied from run.json's config
DEFAULT_TAGS = {"defence": "none", "evolution_round": "0", "condition": "treatment"}


def read_run_dirs(paths: list[str], runs_file: str | None = None) -> list[str]:
    """RUN_DIR arguments plus the lines of --runs-file (blank lines and # comments skipped)."""
    dirs = list(paths)
    if runs_file:
        try:
            lines = Path(runs_file).read_text().splitlines()
        except FileNotFoundError:
            raise InputError(f"--runs-file {runs_file}: file not found") from None
        dirs += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not dirs:
        raise InputError("no run folders: give RUN_DIR arguments or --runs-file")
    return dirs


def neighbours(run: RunFolder) -> list[list[int]]:
    """agent -> its sorted neighbour ids, from a population run's edge list (agents 0..N-1)."""
    graph = run.graph()
    return [sorted(graph.neighbors(agent)) for agent in range(graph.number_of_nodes())]


def load_runs(run_dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """(records, prompts, messages, tag names). Runs in sorted path order, turns in file order."""
    rows, prompts, messages, tag_names = [], {}, {}, set()
    for folder in sorted({os.path.normpath(d) for d in run_dirs}):
        run = RunFolder(folder)
        config, records = run.config, run.records
        tags = {**DEFAULT_TAGS, "model": config.get("policy"), **config.get("tags", {})}
        clash = tags.keys() & ({"run", "neighbours", *RUN_FIELDS} | (records[0].keys() if records else set()))
        if clash:
            raise InputError(f"{folder}: tag(s) {', '.join(sorted(clash))} shadow record fields; rename the tag")
        fixed = {"run": folder, **{k: config.get(k) for k in RUN_FIELDS}, **tags}
        if config.get("testbed") == "population":
            graph = neighbours(run)
            rows += [{**r, **fixed, "neighbours": graph[r["agent"]]} for r in records]
        else:
            rows += [{**r, **fixed} for r in records]
        for sha, conversation in run.prompts.items():
            prompts[sha] = [messages.setdefault((m["role"], m["content"]), len(messages)) for m in conversation]
        tag_names |= tags.keys()
    if not rows:
        raise InputError("the run folders hold no records")
    df = pd.DataFrame(rows)
    df["sampling"] = df["sampling"].map(lambda s: json.dumps(s, sort_keys=True))
    if "rewards" in df:
        df["rewards"] = df["rewards"].map(lambda v: "/".join(str(float(x)) for x in v) if isinstance(v, list) else None)
    if "threshold" in df:
        df["threshold"] = df["threshold"].astype("Int64")
    for col in ("valid", "deviant", "confederate", "success", "truncated"):
        if col in df:
            df[col] = df[col].astype("boolean")
    for tag in tag_names:  # "--tag evolution_round=2" arrives as text; numbers sort as numbers
        values = df[tag].dropna().astype(str)
        if len(values) and values.str.fullmatch(r"-?\d+").all():
            df[tag] = pd.to_numeric(df[tag].astype("string")).astype("Int64")
    tags = sorted(tag_names)
    first = ["run", *RUN_FIELDS, *tags]
    df = df[first + sorted(c for c in df.columns if c not in first)]
    prompt_df = pd.DataFrame({"prompt_sha": sorted(prompts), "message_ids": [prompts[s] for s in sorted(prompts)]})
    message_df = pd.DataFrame(
        [(i, role, content) for (role, content), i in messages.items()], columns=["message_id", "role", "content"]
    )
    return df, prompt_df, message_df, tags
