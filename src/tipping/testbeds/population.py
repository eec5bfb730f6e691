"""Populations on networks: the multi-agent threshold game played by N agents who see only their
neighbours (issue 13).

A `PopulationEpisode` is a `MultiEpisode` whose agents sit on a graph: an agent's peers line lists
its closed neighbourhood (itself and its neighbours, in id order; on the complete graph that is
everyone, the paper's game), and its threshold counts either all N agents (`global` payoff) or its
closed neighbourhood (`local`: the game text then names the neighbourhood's size and threshold,
and the outcome line counts over it). Thresholds are fractions f of the counted group: ceil(f x size).
Confederates always choose the collective option and are no model turns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Literal

import networkx as nx

from tipping.errors import InputError
from tipping.hashing import derive_rng, derive_seed
from tipping.scenarios import reorder_answers
from tipping.scenarios.models import MultiScenario
from tipping.testbeds.multi import MultiEpisode, MultiSettings, game_texts
from tipping.turns import Answer, Turn, canonical_answer

Placement = Literal["random", "hubs", "clustered"]
Payoff = Literal["global", "local"]
PLACEMENTS = ("random", "hubs", "clustered")
PAYOFFS = ("global", "local")


@dataclass(frozen=True)
class PopulationSettings:
    """A population run's own defaults (`tipping run population`, params.yaml `population:`); the
    game's settings are MultiSettings'."""

    agents: int = 64
    network: str = "complete"
    placement: Placement = "random"
    payoff: Payoff = "global"
    rounds: int = 10
    threshold_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)  # 2, 4, 6, 8 of 8 agents: the paper's


# kind -> (parameters in their order, networkx generator taking (n, *parameters, seed))
NETWORKS: dict[str, tuple[tuple[str, ...], Callable[..., nx.Graph]]] = {
    "complete": ((), lambda n, seed: nx.complete_graph(n)),
    "ring": (("k",), lambda n, k, seed: nx.watts_strogatz_graph(n, k, 0.0)),
    "small-world": (("k", "p"), lambda n, k, p, seed: nx.watts_strogatz_graph(n, k, p, seed=seed)),
    "scale-free": (("m",), lambda n, m, seed: nx.barabasi_albert_graph(n, m, seed=seed)),
    "random": (("p",), lambda n, p, seed: nx.gnp_random_graph(n, p, seed=seed)),
}
SPEC_FORMS = "complete, ring:k=4, small-world:k=4,p=0.1, scale-free:m=2, random:p=0.05"


def parse_network(spec: str, agents: int) -> tuple[str, dict]:
    """`--network SPEC` -> (kind, parameters), checked against the number of agents."""
    bad = f"--network {spec!r}: expected one of {SPEC_FORMS}"
    kind, _, rest = spec.partition(":")
    if kind not in NETWORKS:
        raise InputError(bad)
    names = NETWORKS[kind][0]
    params = {}
    for part in filter(None, rest.split(",")):
        found = re.fullmatch(r"(\w+)=([0-9.eE+-]+)", part.strip())
        if not found or found.group(1) not in names or found.group(1) in params:
            raise InputError(bad)
        try:
            params[found.group(1)] = int(found.group(2)) if found.group(1) in ("k", "m") else float(found.group(2))
        except ValueError:
            raise InputError(bad) from None
    if set(params) != set(names):
        raise InputError(bad)
    k, m, p = params.get("k"), params.get("m"), params.get("p")
    if k is not None and not (k >= 2 and k % 2 == 0 and k < agents):
        raise InputError(f"--network {spec!r}: k must be even and in 2..{agents - 1} (the number of --agents - 1)")
    if m is not None and not 1 <= m < agents:
        raise InputError(f"--network {spec!r}: m must be in 1..{agents - 1} (the number of --agents - 1)")
    if p is not None and not 0 <= p <= 1:
        raise InputError(f"--network {spec!r}: p must be in [0, 1]")
    return kind, params


def build_network(spec: str, agents: int, seed: int) -> nx.Graph:
    """The graph of `--network SPEC` on agents 0..N-1, drawn from the run's seed (and the spec)."""
    kind, params = parse_network(spec, agents)
    return NETWORKS[kind][1](agents, *params.values(), seed=derive_seed(seed, "network", spec))


def place_confederates(graph: nx.Graph, count: int, placement: Placement, seed: int) -> frozenset[int]:
    """random: a seeded sample; hubs: the highest degrees (ties: lower id); clustered: agents
    0..M-1 (a contiguous block on a ring)."""
    nodes = sorted(graph.nodes)
    if placement == "random":
        return frozenset(derive_rng(seed, "confederates").sample(nodes, count))
    if placement == "hubs":
        return frozenset(sorted(nodes, key=lambda v: (-graph.degree(v), v))[:count])
    return frozenset(nodes[:count])


def assign_groups(agents: int, confederates: frozenset[int], fraction: float, seed: int) -> tuple[int, ...]:
    """Mixed populations: round(fraction x free agents) of the free agents, a seeded sample, play
    policy group 1, everyone else group 0 (confederates are in group 0 and answer no turns)."""
    free = [a for a in range(agents) if a not in confederates]
    other = set(derive_rng(seed, "mix").sample(free, round(fraction * len(free))))
    return tuple(int(a in other) for a in range(agents))


def edge_list(graph: nx.Graph) -> str:
    """The run folder's network.edgelist: `u v` per line, u < v, sorted (agents without edges are
    absent; the run's `agents` gives N)."""
    return "".join(f"{u} {v}\n" for u, v in sorted(tuple(sorted(e)) for e in graph.edges))


def threshold_for(fraction: float, size: int) -> int:
    """ceil(fraction x size), exact for decimal fractions (0.3 x 10 is 3, not 4)."""
    return math.ceil(Fraction(str(fraction)) * size)


@dataclass(frozen=True)
class Network:
    """What episodes need of a graph: each agent's closed neighbourhood and the confederates."""

    closed: tuple[tuple[int, ...], ...]  # agent -> itself and its neighbours, in id order
    confederates: frozenset[int]

    @classmethod
    def of(cls, graph: nx.Graph, confederates: frozenset[int]) -> Network:
        return cls(tuple(tuple(sorted({v, *graph.neighbors(v)})) for v in range(graph.number_of_nodes())), confederates)


class PopulationEpisode(MultiEpisode):
    def __init__(
        self,
        game: MultiScenario,
        fraction: float,
        rewards: tuple[float, float, float],
        settings: MultiSettings,
        seed: int,
        network: Network,
        payoff: Payoff,
    ):
        super().__init__(game, threshold_for(fraction, settings.agents), rewards, settings, seed)
        self.network, self.payoff, self.fraction = network, payoff, fraction
        self.confederates = set(network.confederates)
        self._local_texts: dict[int, tuple[str, str]] = {}  # neighbourhood size -> (system prompt, question)
        if payoff == "local":
            for size in sorted({len(c) for c in network.closed}):
                texts = game_texts(game, size, threshold_for(fraction, size), self.rewards, settings)
                system_prompt, question = reorder_answers(
                    texts, game.collective, game.independent, settings.option_order, seed, self.id
                )[1]
                self._local_texts[size] = system_prompt, question

    def seen_by(self, agent: int) -> Sequence[int]:
        return self.network.closed[agent]

    def group(self, agent: int) -> Sequence[int]:
        return self.network.closed[agent] if self.payoff == "local" else range(self.settings.agents)

    def threshold_of(self, agent: int) -> int:
        return threshold_for(self.fraction, len(self.group(agent)))

    def texts(self, agent: int) -> tuple[str, str]:
        return self._local_texts[len(self.network.closed[agent])] if self.payoff == "local" else super().texts(agent)


def population_episodes(
    games: Sequence[MultiScenario],
    fractions: Sequence[float],
    reward_sets: Sequence[tuple[float, float, float]],
    settings: MultiSettings,
    seed: int,
    network: Network,
    payoff: Payoff,
) -> list[PopulationEpisode]:
    """The multi grid (threshold fraction x reward set x game), every episode on the same graph."""
    return [
        PopulationEpisode(game, f, rewards, settings, seed, network, payoff)
        for f in fractions
        for rewards in reward_sets
        for game in games
    ]


def probe_turns(
    game: MultiScenario,
    fraction: float,
    rewards: tuple[float, float, float],
    settings: MultiSettings,
    seed: int,
    degree: int,
) -> list[tuple[float | None, bool | None, Turn]]:
    """The response-function probe's turns: (f, own, turn). f=None: a first-round turn (no history).
    Else the round-2 turn of agent `degree` in a game of its closed neighbourhood (degree + 1
    agents, the threshold a fraction of them, as under local payoff) after a round 1 in which
    round(f x degree) of its neighbours (a seeded sample, so the peers line does not list them
    first) and itself (own=True) or not (own=False) chose the collective option; f on the grid
    0, 1/degree, ..., 1. The game text, peers line and outcome line are the testbed's own."""
    settings = replace(settings, agents=degree + 1, confederates=0, rounds=2)
    threshold = threshold_for(fraction, degree + 1)
    first = MultiEpisode(game, threshold, rewards, settings, seed)
    out: list[tuple[float | None, bool | None, Turn]] = [(None, None, first.turns(1)[-1])]
    for k in range(degree + 1):
        colluders = set(derive_rng(seed, game.name, "probe", k).sample(range(degree), k))
        for own in (False, True):
            episode = MultiEpisode(game, threshold, rewards, settings, seed)
            chosen = colluders | ({degree} if own else set())
            episode.record(
                1,
                [
                    Answer(canonical_answer(episode.collective if t.agent in chosen else episode.options.aligned))
                    for t in episode.turns(1)
                ],
            )
            out.append((k / degree, own, episode.turns(2)[-1]))
    return out
