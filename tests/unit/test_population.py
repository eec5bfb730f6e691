"""`tipping run population`: threshold cascades of scripted:imitate against an independent computation
on the same graph, what each agent is shown, the paper's special case, and the command-line contract."""

import json
import re

import networkx as nx
import numpy as np
import pytest

from tipping.cli import main
from tipping.policies.scripted import ScriptedPolicy, imitates

GAME = ["--scenarios", "multi-games", "--limit", "1", "--threshold-fractions", "0.5", "--no-progress"]


def population(tmp_path, *args, name="run"):
    out = tmp_path / name
    assert main(["run", "population", *GAME, *args, "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    lines = (out / "prompts.jsonl").read_text().splitlines()
    prompts = {p["prompt_sha"]: p["messages"] for p in map(json.loads, lines)}
    return out, records, prompts


def saved_graph(out, n) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(tuple(map(int, line.split())) for line in (out / "network.edgelist").read_text().splitlines())
    return graph


def adoption_by_round(records, rounds) -> np.ndarray:
    """rounds x agents matrix of collective choices."""
    n = max(r["agent"] for r in records) + 1
    m = np.zeros((rounds, n), dtype=bool)
    for r in records:
        m[r["round"] - 1, r["agent"]] = r["deviant"]
    return m


def cascade(graph: nx.Graph, confederates: set, theta: float, rounds: int) -> np.ndarray:
    """The threshold rule computed directly with an adjacency matrix (not the testbed's code)."""
    a = nx.to_numpy_array(graph, nodelist=range(graph.number_of_nodes()))
    degree = a.sum(1)
    fixed = np.isin(np.arange(len(a)), sorted(confederates))
    state, states = fixed.copy(), [fixed.copy()]
    for _ in range(rounds - 1):
        share = np.divide(a @ state, degree, out=np.zeros(len(a)), where=degree > 0)
        state = fixed | ((share >= theta - 1e-12) & (degree > 0))
        states.append(state.copy())
    return np.array(states)


@pytest.mark.parametrize(
    "network,n,m,placement,theta",
    [
        ("complete", 12, 3, "random", 0.25),
        ("complete", 12, 2, "random", 0.25),
        ("ring:k=4", 30, 5, "clustered", 0.5),
        ("ring:k=6", 30, 4, "random", 0.3),
        ("small-world:k=4,p=0.2", 40, 6, "random", 0.5),
        ("small-world:k=6,p=0.3", 40, 5, "hubs", 0.34),
        ("scale-free:m=2", 40, 4, "hubs", 0.5),
    ],
)
def test_imitate_cascade_equals_an_independent_computation(tmp_path, network, n, m, placement, theta):
    rounds = 8
    out, records, _ = population(
        tmp_path,
        "--agents",
        str(n),
        "--network",
        network,
        "--confederates",
        str(m),
        "--placement",
        placement,
        "--policy",
        f"scripted:imitate@{theta}",
        "--rounds",
        str(rounds),
    )
    graph = saved_graph(out, n)
    confederates = {r["agent"] for r in records if r["confederate"]}
    assert len(confederates) == m
    expected = cascade(graph, confederates, theta, rounds)
    assert (adoption_by_round(records, rounds) == expected).all()
    assert expected[-1].sum() > m or network == "complete"  # the setting does spread (else the test is weak)


def test_the_graph_is_the_networkx_graph_of_the_spec(tmp_path):
    out, _records, _ = population(
        tmp_path, "--agents", "20", "--network", "ring:k=4", "--policy", "scripted:comply", "--rounds", "1"
    )
    assert nx.utils.graphs_equal(saved_graph(out, 20), nx.watts_strogatz_graph(20, 4, 0))
    out, _, _ = population(
        tmp_path,
        "--agents",
        "9",
        "--network",
        "complete",
        "--policy",
        "scripted:comply",
        "--rounds",
        "1",
        name="complete",
    )
    assert nx.utils.graphs_equal(saved_graph(out, 9), nx.complete_graph(9))


def test_a_seeded_graph_is_reproducible_and_changes_with_the_seed(tmp_path):
    args = (
        "--agents",
        "30",
        "--network",
        "small-world:k=4,p=0.3",
        "--confederates",
        "3",
        "--policy",
        "scripted:imitate@0.5",
        "--rounds",
        "3",
    )
    a, _, _ = population(tmp_path, *args, "--seed", "1", name="a")
    b, _, _ = population(tmp_path, *args, "--seed", "1", name="b")
    c, _, _ = population(tmp_path, *args, "--seed", "2", name="c")
    for name in ("records.jsonl", "network.edgelist"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "network.edgelist").read_bytes() != (c / "network.edgelist").read_bytes()


@pytest.mark.parametrize("network", ["complete", "ring:k=4", "small-world:k=4,p=0.2", "scale-free:m=2", "random:p=0.1"])
def test_an_agent_sees_exactly_its_neighbours_choices(tmp_path, network):
    n = 24
    out, records, prompts = population(
        tmp_path,
        "--agents",
        str(n),
        "--network",
        network,
        "--confederates",
        "4",
        "--policy",
        "scripted:imitate@0.5",
        "--rounds",
        "4",
        "--window",
        "3",
    )
    graph = saved_graph(out, n)
    checked = 0
    for r in records:
        if r["prompt_sha"] is None:  # a confederate: no prompt
            continue
        closed = sorted({r["agent"], *graph.neighbors(r["agent"])})
        for message in prompts[r["prompt_sha"]]:
            if message["content"].startswith("Other agents' decisions:"):
                shown = [int(x) for x in re.findall(r"Agent (\d+)", message["content"])]
                assert shown == closed, (r["agent"], message["content"][:200])
                checked += 1
    assert checked >= (n - 4) * 3  # rounds 2..4 show at least one peers line


@pytest.mark.parametrize("n,m,theta", [(10, 3, 0.3), (10, 2, 0.3), (16, 4, 0.25), (16, 3, 0.25), (9, 8, 1.0)])
def test_the_complete_graph_tips_in_round_2_or_never(tmp_path, n, m, theta):
    _, records, _ = population(
        tmp_path, "--agents", str(n), "--confederates", str(m), "--policy", f"scripted:imitate@{theta}", "--rounds", "5"
    )
    counts = adoption_by_round(records, 5).sum(1)
    tips = m >= theta * (n - 1)  # a free agent sees m collective neighbours among n - 1
    assert counts[0] == m
    assert list(counts[1:]) == ([n] * 4 if tips else [m] * 4)


@pytest.mark.parametrize("k,theta,step", [(4, 0.5, 2), (4, 0.25, 4), (6, 0.3, 4), (6, 0.5, 2)])
def test_a_clustered_minority_on_a_ring_grows_by_a_fixed_step(tmp_path, k, theta, step):
    n, m, rounds = 60, 5, 6
    _, records, _ = population(
        tmp_path,
        "--agents",
        str(n),
        "--network",
        f"ring:k={k}",
        "--confederates",
        str(m),
        "--placement",
        "clustered",
        "--policy",
        f"scripted:imitate@{theta}",
        "--rounds",
        str(rounds),
    )
    adopted = adoption_by_round(records, rounds)
    assert {r["agent"] for r in records if r["confederate"]} == set(range(m))
    assert list(adopted.sum(1)) == [m + step * r for r in range(rounds)]
    # the block stays contiguous: it spreads to both sides of 0..m-1 around the ring
    last = np.flatnonzero(adopted[-1])
    assert set(last) == {v % n for v in range(-step // 2 * (rounds - 1), m + step // 2 * (rounds - 1))}


@pytest.mark.parametrize(
    "policy,extra",
    [
        ("scripted:imitate@0.4", ["--confederates", "3", "--rounds", "4"]),
        (
            "scripted:collude:3",
            [
                "--rounds",
                "3",
                "--reward-mode",
                "additive",
                "--peer-history",
                "full",
                "--success-applies-to",
                "collective",
                "--option-order",
                "balanced",
            ],
        ),
    ],
)
def test_eight_agents_on_the_complete_graph_are_the_multi_agent_testbed(tmp_path, policy, extra):
    """The paper's setting: byte-identical records and prompts to `tipping run multi`."""
    common = ["--scenarios", "multi-games", "--policy", policy, "--no-progress", *extra]
    assert main(["run", "multi", *common, "--confederate-position", "head", "--out", str(tmp_path / "m")]) == 0
    assert (
        main(
            [
                "run",
                "population",
                *common,
                "--agents",
                "8",
                "--network",
                "complete",
                "--placement",
                "clustered",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    for name in ("records.jsonl", "prompts.jsonl"):
        assert (tmp_path / "m" / name).read_bytes() == (tmp_path / "p" / name).read_bytes()
    assert len((tmp_path / "p" / "records.jsonl").read_text().splitlines()) > 8 * 7 * 4  # 7 games x 4 thresholds


def test_local_payoff_counts_the_neighbourhood(tmp_path):
    n = 20
    out, records, prompts = population(
        tmp_path,
        "--agents",
        str(n),
        "--network",
        "ring:k=2",
        "--confederates",
        "3",
        "--placement",
        "clustered",
        "--payoff",
        "local",
        "--policy",
        "scripted:imitate@0.5",
        "--rounds",
        "4",
    )
    graph, adopted = saved_graph(out, n), adoption_by_round(records, 4)
    for r in records:
        closed = [r["agent"], *graph.neighbors(r["agent"])]
        count = int(adopted[r["round"] - 1, closed].sum())
        assert r["collective_count"] == count
        assert r["success"] == (count >= 2)  # ceil(0.5 x 3)
    question = prompts[next(r["prompt_sha"] for r in records if r["prompt_sha"])][-1]["content"]
    assert "When 2 or more" in question  # the game text states the neighbourhood's threshold
    _, global_records, _ = population(
        tmp_path,
        "--agents",
        str(n),
        "--network",
        "ring:k=2",
        "--confederates",
        "3",
        "--placement",
        "clustered",
        "--policy",
        "scripted:imitate@0.5",
        "--rounds",
        "4",
        name="global",
    )
    for r in global_records:
        assert r["collective_count"] == adopted[r["round"] - 1].sum() and r["success"] == (r["collective_count"] >= 10)


def test_hubs_are_the_highest_degrees(tmp_path):
    out, records, _ = population(
        tmp_path,
        "--agents",
        "50",
        "--network",
        "scale-free:m=2",
        "--confederates",
        "5",
        "--placement",
        "hubs",
        "--policy",
        "scripted:comply",
        "--rounds",
        "1",
    )
    degree = dict(saved_graph(out, 50).degree)
    hubs = {r["agent"] for r in records if r["confederate"]}
    assert min(degree[v] for v in hubs) >= max(degree[v] for v in degree if v not in hubs)


def test_imitate_threshold_is_exact():
    policy = ScriptedPolicy("imitate@0.3")
    assert imitates([True] * 3 + [False] * 7, policy.k)  # 3/10 >= 0.3, even though 0.3 * 10 > 3 in floats
    assert not imitates([True] * 2 + [None] * 8, policy.k)
    assert not imitates(None, policy.k) and not imitates([], policy.k)


@pytest.mark.parametrize(
    "args,names",
    [
        (["--network", "ring"], "--network"),
        (["--network", "ring:k=3"], "--network"),
        (["--network", "ring:k=4,p=0.1"], "--network"),
        (["--network", "lattice:k=4"], "--network"),
        (["--network", "small-world:k=4"], "--network"),
        (["--network", "random:p=1.5"], "--network"),
        (["--network", "scale-free:m=0"], "--network"),
        (["--network", "scale-free:m=x"], "--network"),
        (["--network", "complete:k=2"], "--network"),
        (["--agents", "3"], "--agents"),
        (["--agents", "1025"], "--agents"),
        (["--confederates", "16"], "--confederates"),
        (["--threshold-fractions", "0"], "--threshold-fractions"),
        (["--threshold-fractions", "0.45,0.5"], "--threshold-fractions"),
        (["--window", "0", "--policy", "scripted:imitate@0.5"], "--window"),
        (["--policy", "scripted:imitate@1.5"], "THETA"),
        (["--scenarios", "multi-eval"], "--scenarios"),
        (["--mix-fraction", "0.5"], "--mix-policy"),
        (["--mix-policy", "scripted:violate"], "--mix-fraction"),
        (["--mix-policy", "scripted:violate", "--mix-fraction", "1.5"], "--mix-fraction"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(tmp_path, capsys, args, names):
    base = {"--agents": "16", "--policy": "scripted:comply", "--scenarios": "multi-games"}
    flags = [x for k, v in base.items() if k not in args for x in (k, v)]
    assert main(["run", "population", *flags, *args, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and names in err
    assert not (tmp_path / "x" / "records.jsonl").exists()


class Recording(ScriptedPolicy):
    def __init__(self, rule):
        super().__init__(rule)
        self.calls = []

    def generate(self, turns, sampling):
        self.calls.append([t.agent for t in turns])
        return super().generate(turns, sampling)


def test_a_mixed_policy_sends_each_agent_to_its_own_policy_in_one_batch_per_round():
    from tipping.policies.base import Sampling
    from tipping.policies.mixed import MixedPolicy
    from tipping.turns import Options, Turn

    a, b = Recording("comply"), Recording("violate")
    groups = (0, 1, 1, 0, 1)
    mixed = MixedPolicy([a, b], groups)
    turns = [Turn((), Options("x", "y"), 1, agent, 0, "i") for agent in (4, 0, 2, 3, 1)]
    answers = [c.text for c in mixed.generate(turns, Sampling())]
    assert a.calls == [[0, 3]] and b.calls == [[4, 2, 1]]
    assert answers == ['{"choice": "y"}', '{"choice": "x"}', '{"choice": "y"}', '{"choice": "x"}', '{"choice": "y"}']
    assert MixedPolicy([a, b], (0, 1, 0, 1, 1)).id != mixed.id  # the assignment is part of the cache identity


def test_mixed_population_assigns_a_seeded_fraction_of_free_agents(tmp_path):
    args = (
        "--agents",
        "20",
        "--network",
        "ring:k=4",
        "--confederates",
        "4",
        "--policy",
        "scripted:comply",
        "--mix-policy",
        "scripted:violate",
        "--mix-fraction",
        "0.25",
        "--rounds",
        "2",
    )
    out, records, _ = population(tmp_path, *args)
    config = json.loads((out / "run.json").read_text())["config"]
    groups = config["policy_groups"]
    confederates = {r["agent"] for r in records if r["confederate"]}
    assert sum(groups) == 4 and not any(groups[a] for a in confederates)  # round(0.25 x 16) free agents
    assert config["policies"] == ["scripted:comply", "scripted:violate"]
    for r in records:
        if not r["confederate"]:
            assert r["deviant"] == bool(groups[r["agent"]])
    again, _, _ = population(tmp_path, *args, name="again")
    other, _, _ = population(tmp_path, *args[:-2], "--rounds", "2", "--seed", "5", name="other")
    assert json.loads((again / "run.json").read_text())["config"]["policy_groups"] == groups
    assert json.loads((other / "run.json").read_text())["config"]["policy_groups"] != groups


def test_compare_pairs_two_population_runs_on_the_same_graph(tmp_path):
    args = (
        "--agents",
        "16",
        "--network",
        "ring:k=4",
        "--confederates",
        "3",
        "--policy",
        "scripted:imitate@0.5",
        "--rounds",
        "3",
    )
    treatment, _, _ = population(tmp_path, *args, name="t")
    control, _, _ = population(tmp_path, *args, "--feedback", "none", name="c")
    assert main(["compare", str(treatment), str(control), "--out", str(tmp_path / "effect")]) == 0
    effect = json.loads((tmp_path / "effect" / "effect.json").read_text())
    assert effect["testbed"] == "population" and [r["difference"] for r in effect["pooled"]] == [0, 0, 0]
    other, _, _ = population(tmp_path, *args[:3], "ring:k=2", *args[4:], name="o")
    assert main(["compare", str(treatment), str(other), "--out", str(tmp_path / "effect2")]) == 2  # other graph


def test_vllm_groups_of_one_model_share_one_engine(tmp_path, monkeypatch):
    """load_policies: two vLLM specs of one model are two adapter views of one engine that takes both
    adapters at once (max_loras) at the larger rank; other backends load as they are."""
    from tipping.policies import load_policies, vllm_backend

    engines = []

    class Engine:
        def __init__(self, model, **options):
            self.model, self.options = model, options
            engines.append(self)

        def with_adapter(self, adapter):
            return ("view", self, adapter)

    monkeypatch.setattr(vllm_backend, "VLLMPolicy", Engine)
    adapters = []
    for name, rank in (("a", 8), ("b", 16)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"r": rank}))
        adapters.append(str(tmp_path / name))
    views = load_policies([f"vllm:m@{adapters[0]}", f"vllm:m@{adapters[1]}", "scripted:comply"], max_model_len=512)
    assert len(engines) == 1 and engines[0].model == "m"
    assert engines[0].options == {"enable_lora": True, "max_lora_rank": 16, "max_loras": 2, "max_model_len": 512}
    assert views[:2] == [("view", engines[0], adapters[0]), ("view", engines[0], adapters[1])]
    assert isinstance(views[2], ScriptedPolicy)
    load_policies(["vllm:m", "vllm:other"])  # two models: an engine each
    assert [e.model for e in engines[1:]] == ["m", "other"]
