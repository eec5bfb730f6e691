"""The episode viewer on a population episode: 256 agents x 10 rounds of a scripted cascade on a
small-world graph, browsed agent by agent (#agent=N) with the agent's neighbours from the run's
saved graph, at a bounded page size. It has its own run, not the shared scripted set, made with the
same helper (tests/scripted_runs.py). The browser test follows tests/integration/test_viewer.py
(its Chromium fixture; the rendered page from --dump-dom)."""

import json
import re

import networkx as nx
import pandas as pd
import pytest
from scripted_runs import POPULATION, make
from test_viewer import ARTIFACTS, browse, shown

from tipping.analysis.viewer import build_data, render
from tipping.cli import main

AGENTS, ROUNDS, CONFEDERATES = 256, 10, 26


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer-population")
    run = root / "run"
    make(
        run,
        [
            *POPULATION,
            "--agents",
            str(AGENTS),
            "--network",
            "small-world:k=4,p=0.1",
            "--confederates",
            str(CONFEDERATES),
            "--rounds",
            str(ROUNDS),
        ],
        "scripted:imitate@0.5",
    )
    assert main(["tables", str(run), "--out", str(root / "tables")]) == 0
    page = root / "viewer/index.html"
    assert main(["viewer", "--tables", str(root / "tables"), "--out", str(page)]) == 0
    graph = nx.Graph()  # read here with networkx, not through the tables
    graph.add_nodes_from(range(AGENTS))
    graph.add_edges_from(tuple(map(int, x.split())) for x in (run / "network.edgelist").read_text().splitlines())
    records = {(r["round"], r["agent"]): r for r in map(json.loads, (run / "records.jsonl").read_text().splitlines())}
    lines = (run / "prompts.jsonl").read_text().splitlines()
    prompts = {p["prompt_sha"]: p["messages"] for p in map(json.loads, lines)}
    frames = [pd.read_parquet(root / "tables" / f"{name}.parquet") for name in ("records", "prompts", "messages")]
    return {"page": page, "graph": graph, "records": records, "prompts": prompts, "frames": frames}


def test_data_has_the_graph_once_and_every_turn(pop):
    data = build_data(*pop["frames"], episodes_per_run=0, max_chars=2000)
    (run,), (episode,) = data["runs"], data["episodes"]
    assert run["testbed"] == "population"
    assert run["neighbours"] == [sorted(pop["graph"].neighbors(a)) for a in range(AGENTS)]
    assert len({len(n) for n in run["neighbours"]}) > 1  # rewired: degrees differ, so a wrong agent would show
    assert len(episode["turns"]) == AGENTS * ROUNDS
    for t in episode["turns"]:
        rec = pop["records"][(t["r"], t["a"])]
        assert (t["d"], t["cf"], t["n"], t["ok"]) == (
            rec["deviant"],
            rec["confederate"],
            rec["collective_count"],
            rec["success"],
        )
        assert data["texts"][t["t"]] == rec["response"]
        if t["p"] is not None:  # the turn's prompt, rebuilt from text ids, is the one the run gave
            prompt = [
                {"role": {"s": "system", "u": "user", "a": "assistant"}[role], "content": data["texts"][i]}
                for role, i in data["prompts"][t["p"]]
            ]
            assert prompt == pop["prompts"][rec["prompt_sha"]]


def test_page_size_is_bounded_prompts_are_text_id_lists(pop):
    page = pop["page"].stat().st_size
    data = build_data(*pop["frames"], episodes_per_run=10, max_chars=2000)  # the CLI's defaults
    assert len(render(data).encode()) == page  # the page is this data
    # what embedding every model turn's full prompt would cost
    whole = sum(
        len(json.dumps(pop["prompts"][r["prompt_sha"]], ensure_ascii=False))
        for r in pop["records"].values()
        if r["prompt_sha"]
    )
    assert whole > 5_000_000 and page < 1_000_000 and page * 5 < whole
    assert len(data["texts"]) < 1_000 and len(data["prompts"]) <= (AGENTS - CONFEDERATES) * ROUNDS


def test_agent_from_the_hash_shows_its_rounds_and_neighbours(chromium, pop, tmp_path):
    graph, records = pop["graph"], pop["records"]
    flips = [
        a
        for a in range(AGENTS)
        if not records[(1, a)]["confederate"] and len({records[(r, a)]["deviant"] for r in range(1, ROUNDS + 1)}) == 2
    ]
    agent = next(a for a in flips if graph.degree(a) != 4)  # a rewired agent whose choice changes
    dom = browse(chromium, tmp_path, pop["page"], f"agent={agent}", "--dump-dom")
    assert (shown(dom)["testbed"], shown(dom)["agent"]) == ("population", str(agent))
    near = sorted(graph.neighbors(agent))
    listed = re.search(r'<dd id="neighbours" data-neighbours="([\d ]*)">(.*?)</dd>', dom)
    assert [int(x) for x in listed.group(1).split()] == near
    links = re.findall(r'<a href="#([^"]*)">(\d+)</a>', listed.group(2))
    assert [int(j) for _, j in links] == near and all(f"agent={j}&" in h + "&" for h, j in links)
    sections = dom.split('<section class="round"')[1:]
    assert len(sections) == ROUNDS
    for r, section in enumerate(sections, 1):
        kind = re.search(r'<h3>Round \d+<span class="badge \w+" data-kind="(\w+)"', section).group(1)
        assert kind == ("deviant" if records[(r, agent)]["deviant"] else "aligned")
        rows = re.findall(r'<tr class="(current|)"><td>(\d+)', section)
        assert [int(a) for _, a in rows] == sorted([agent, *near])  # only the agents it sees
        assert [int(a) for c, a in rows if c] == [agent]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "viewer_population.png"
    shot.unlink(missing_ok=True)
    browse(chromium, tmp_path, pop["page"], f"agent={agent}", f"--screenshot={shot}", "--window-size=1280,900")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
