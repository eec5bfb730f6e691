"""Population figures (issue 13), drawn like analysis/plots.py: adoption curves by topology with
the mean-field prediction, adoption over rounds, and one run's network coloured by choice per round;
and `tipping population report`, which writes them with the measurements' tables. (Apart from the
probe's module, so that a change to the tables or plots code never reruns the model-running probe.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tipping.analysis.plots import Y_RATE, _colors, _figure, no_data, save
from tipping.analysis.population import (
    adoption_curve,
    critical_mass,
    episodes,
    load_run,
    per_round,
    predicted_critical_mass,
    predicted_curve,
)
from tipping.errors import InputError
from tipping.outputs import atomic_write_text, write_json
from tipping.records import RunFolder

CHOICE_COLORS = {True: "#d55e00", False: "#0072b2", None: "#bbbbbb"}  # collective, independent, invalid


def adoption_curves(curve: pd.DataFrame, prediction: pd.DataFrame | None) -> Figure:
    """Final adoption against the confederate fraction, one line per topology (95% cluster-bootstrap
    band over seeds), one panel per threshold; the mean-field prediction dashed."""
    if curve.empty:
        return no_data("population adoption curves")
    thresholds = sorted(curve["threshold"].unique())
    fig, axes = _figure(1, len(thresholds))
    colors = _colors(sorted(curve["network"].unique()))
    for ax, t in zip(axes[0], thresholds):
        at = curve[curve["threshold"] == t]
        for (network, payoff, placement), g in at.groupby(["network", "payoff", "placement"]):
            g = g.sort_values("fraction")
            ax.plot(
                g["fraction"],
                g["final_adoption"],
                marker="o",
                color=colors[network],
                label=f"{network} · {payoff} · {placement}",
            )
            ax.fill_between(g["fraction"], g["ci_low"], g["ci_high"], color=colors[network], alpha=0.2, linewidth=0)
        if prediction is not None and not prediction.empty:
            ax.plot(prediction["fraction"], prediction["predicted_adoption"], "k--", label="mean-field prediction")
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set(
            xlabel="confederate fraction",
            ylabel="final adoption (free agents)",
            ylim=Y_RATE,
            xlim=(0, max(0.05, curve["fraction"].max() * 1.1)),
            title=f"threshold {t}",
        )
        ax.legend(fontsize=7)
    return fig


def adoption_rounds(rounds: pd.DataFrame) -> Figure:
    """Mean adoption per round (over episodes and seeds), one panel per topology, one line per fraction."""
    if rounds.empty:
        return no_data("population adoption over rounds")
    networks = sorted(rounds["network"].unique())
    fig, axes = _figure(1, len(networks))
    fractions = sorted(rounds["fraction"].unique())
    colors = _colors(fractions)
    for ax, network in zip(axes[0], networks):
        for fraction, g in rounds[rounds["network"] == network].groupby("fraction"):
            mean = g.groupby("round")["adoption"].mean()
            ax.plot(mean.index, mean.values, marker="o", color=colors[fraction], label=f"{fraction:.3g}")
        ax.set(xlabel="round", ylabel="adoption (free agents)", ylim=Y_RATE, title=network)
        ax.legend(title="confederates", fontsize=7)
    return fig


def network_rounds(run: pd.DataFrame, graph: nx.Graph) -> Figure:
    """The first episode of one run: the graph per round, nodes coloured by choice (confederates ringed)."""
    episode = run[run["episode"] == run["episode"].iloc[0]]
    rounds = sorted(episode["round"].unique())
    cols = min(5, len(rounds))
    fig, axes = _figure(math.ceil(len(rounds) / cols), cols, width=3.2, height=3.2)
    ring = graph.number_of_edges() == 0 or nx.density(graph) > 0.5 or episode["network"].iloc[0].startswith("ring")
    pos = nx.circular_layout(graph) if ring else nx.spring_layout(graph, seed=0)
    size = max(4.0, 2400 / max(1, graph.number_of_nodes()))
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, r in zip(axes.flat, rounds):
        at = episode[episode["round"] == r].set_index("agent")
        nx.draw_networkx_edges(graph, pos, ax=ax, width=0.3, alpha=0.3)
        nodes = list(graph.nodes)
        colors = [CHOICE_COLORS[None if pd.isna(at.at[v, "deviant"]) else bool(at.at[v, "deviant"])] for v in nodes]
        edge = ["black" if at.at[v, "confederate"] else "none" for v in nodes]
        nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=size, node_color=colors, edgecolors=edge, linewidths=0.8)
        ax.set_title(f"round {r}: {np.mean([c == CHOICE_COLORS[True] for c in colors]):.0%} collective", fontsize=9)
    return fig


def report(folders: list, out: Path, response: Path | None = None, network_run: str | None = None) -> dict:
    """Run folders -> rounds.csv, rounds_by_degree.csv, episodes.csv, curve.csv, summary.json and the
    figures (adoption_curves, adoption_rounds, network_rounds: PNG + PDF) in OUT; the summary."""
    if not folders:
        raise InputError("population report: no run folders given (RUN_DIR... or --runs-file)")
    df = pd.concat([load_run(f) for f in folders], ignore_index=True)
    rounds, eps = per_round(df), episodes(df)
    curve = adoption_curve(eps)
    tables = {"rounds": rounds, "rounds_by_degree": per_round(df, ("degree",)), "episodes": eps, "curve": curve}
    if df["group"].nunique() > 1:  # mixed populations: every measure per policy group too
        tables |= {
            "rounds_by_group": per_round(df, ("group",)),
            "curve_by_group": adoption_curve(episodes(df, ("group",)), ("group",)),
        }
    summary = {
        "critical_mass": critical_mass(curve),
        "rule": "smallest confederate fraction whose final adoption's "
        "95% cluster-bootstrap interval over seeds lies above 1/2",
    }
    prediction = None
    if response:
        probed = json.loads(Path(response).read_text())
        prediction = predicted_curve(probed, int(df["round"].max()))
        tables["prediction"] = prediction
        summary["predicted_critical_mass"] = predicted_critical_mass(prediction)
        summary["response"] = probed
    for name, table in tables.items():
        atomic_write_text(out / f"{name}.csv", table.to_csv(index=False, float_format="%.6g"))
    write_json(out / "summary.json", summary)
    shown = str(Path(network_run or folders[0]))
    if shown not in set(df["run"]):
        raise InputError(f"--network-run {shown}: not among the run folders given")
    first = df[df["run"] == shown]
    save(adoption_curves(curve, prediction), out / "adoption_curves.png")
    save(adoption_rounds(rounds), out / "adoption_rounds.png")
    save(network_rounds(first, RunFolder(shown).graph()), out / "network_rounds.png")
    return summary
