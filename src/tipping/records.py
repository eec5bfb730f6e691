"""The data contract of a run folder: the turn records the testbeds build, and the one writer and
reader of run folders (their file names: tipping.paths).

    records.jsonl     one SingleTurn or MultiTurn per line (population runs: MultiTurn), in the
                      rollout's order (round, episode, agent); keys sorted (outputs.dumps_line)
    prompts.jsonl     every distinct conversation given, keyed by the records' prompt_sha
    run.json          the resolved config ("config", always with its "testbed"), versions, stats
    metrics.json      per-round rates; written last, so its presence means the run finished
    network.edgelist  population runs: the graph the agents played on (`u v` per line)

Every reader opens a folder with `RunFolder`: a missing file is one InputError naming the file and
the folder, an unreadable run.json or metrics.json another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TypedDict

from tipping.errors import InputError
from tipping.outputs import atomic_write_text, read_jsonl, write_json, write_jsonl
from tipping.paths import EDGE_LIST, METRICS_JSON, PROMPTS_JSONL, RECORDS_JSONL, RUN_JSON

# the order readers check a finished folder's files in (metrics.json last: it is written last)
FINISHED = (RUN_JSON, RECORDS_JSONL, PROMPTS_JSONL, METRICS_JSON)


class Played(TypedDict, total=False):
    """What the rollout engine adds to every turn record (tipping.rollout.Engine.run)."""

    policy: str
    decision: str
    sampling: dict


class SingleTurn(Played):
    """One turn of a single-agent episode (tipping.testbeds.single)."""

    testbed: str  # "single"
    episode: str
    item: str
    scenario: str
    round: int
    agent: int  # always 0
    seed: int
    supervision: str  # "supervised" | "unsupervised"
    compliant: str
    violating: str
    compliant_reward: float
    violating_reward: float
    shown_first: str | None  # the option the prompt lists first (None: it lists no JSON answers)
    prompt_sha: str
    response: str
    choice: str | None  # None: unparseable or truncated
    valid: bool
    deviant: bool | None
    truncated: bool
    p_deviant: float | None  # forced choice only
    reward: float
    capital: None
    prompt_tokens: int
    completion_tokens: int


class MultiTurn(Played):
    """One agent's turn of a multi-agent round (tipping.testbeds.multi; population episodes too).
    Confederates answer no model turn: their seed and prompt_sha are None, their tokens 0."""

    testbed: str  # "multi", also in population runs (run.json's config says "population")
    episode: str
    item: str
    scenario: str
    threshold: int
    rewards: list[float]  # high, normal, low
    round: int
    agent: int
    confederate: bool
    shown_first: str | None
    seed: int | None
    prompt_sha: str | None
    response: str
    choice: str | None
    valid: bool
    deviant: bool | None
    truncated: bool
    p_deviant: float | None
    reward: float  # the capital's change this round
    capital_before: float
    capital: float
    collective_count: int  # collective choices among the agents counted for this agent's threshold
    success: bool
    prompt_tokens: int
    completion_tokens: int


def unfinish(folder: Path) -> None:
    """Mark a folder as not finished before a run writes into it: a crash must not leave old
    metrics beside new records."""
    (Path(folder) / METRICS_JSON).unlink(missing_ok=True)


def write_run(
    folder: Path,
    records: Sequence[dict],
    prompts: dict[str, list],
    run: dict,
    metrics: dict,
    files: dict[str, str] | None = None,
) -> None:
    """Write a run folder: records, the extra `files` (name -> text: a population run's edge list),
    prompts, run.json, and metrics.json last (its presence means the run completed)."""
    folder = Path(folder)
    write_jsonl(folder / RECORDS_JSONL, records)
    for name, text in (files or {}).items():
        atomic_write_text(folder / name, text)
    write_jsonl(folder / PROMPTS_JSONL, [{"prompt_sha": k, "messages": v} for k, v in prompts.items()])
    write_json(folder / RUN_JSON, run)
    write_json(folder / METRICS_JSON, metrics)


class RunFolder:
    """A run folder, each file read on first use. Opening checks that the files `needs` names are
    there (default: a finished run's), in order."""

    def __init__(self, folder: str | Path, needs: Iterable[str] = FINISHED):
        self.path = Path(folder)
        for name in needs:
            self.file(name)

    def file(self, name: str) -> Path:
        """The path of one of the folder's files; InputError when it is not there."""
        path = self.path / name
        if not path.is_file():
            command = "tipping run population" if name == EDGE_LIST else "tipping run"
            raise InputError(f"{path}: not found; is {self.path} a finished `{command}` folder?")
        return path

    def _json(self, name: str) -> dict:
        try:
            return json.loads(self.file(name).read_text())
        except ValueError as exc:
            raise InputError(f"{self.path / name}: unreadable run output ({exc})") from None

    @cached_property
    def run(self) -> dict:
        """run.json: {"config": the resolved config with its testbed, "versions", "stats"}."""
        run = self._json(RUN_JSON)
        if not isinstance(run, dict) or not isinstance(run.get("config"), dict) or "testbed" not in run["config"]:
            raise InputError(f"{self.path / RUN_JSON}: unreadable run output (no config.testbed)")
        return run

    @property
    def config(self) -> dict:
        return self.run["config"]

    @cached_property
    def metrics(self) -> dict:
        return self._json(METRICS_JSON)

    @cached_property
    def records(self) -> list[dict]:
        return read_jsonl(self.file(RECORDS_JSONL))

    @cached_property
    def prompts(self) -> dict[str, list]:
        """prompt_sha -> the conversation (in prompts.jsonl's order)."""
        return {row["prompt_sha"]: row["messages"] for row in read_jsonl(self.file(PROMPTS_JSONL))}

    def graph(self):
        """A population run's graph (a networkx Graph on agents 0..N-1, agents without edges included)."""
        import networkx as nx  # only population readers need it (tables keep a light import closure)

        graph = nx.Graph()
        graph.add_nodes_from(range(self.config["agents"]))
        lines = self.file(EDGE_LIST).read_text().splitlines()
        graph.add_edges_from(tuple(map(int, line.split())) for line in lines)
        return graph
