"""Figures: one function per figure, table (DataFrame) -> matplotlib Figure; no statistics here.

Rate bands and error bars are the cluster 95% intervals (cluster_ci_low/high: the answers of one
episode or one item across replicates are correlated); effect bands are the paired intervals.

The in-context figures show the un-evolved policies (the lowest evolution round present, 0 in
the design); the `evolution` figure is the weight-level view. A figure whose data is absent
draws a "no data for ..." panel. Files are byte-deterministic: fixed dpi and size, no
timestamps or software versions in the PNG/PDF metadata.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from tipping.analysis.tables import ALL, EFFECT_COLUMNS, RATE_COLUMNS, TREATMENT
from tipping.outputs import atomic_write_bytes
from tipping.paths import FIGURES

DPI = 150
TESTBEDS = ("single", "multi")  # panel order
SERIES = ["model", "defence"]  # one line per model x defence
NOT_SERIES = {
    "testbed",
    "metric",
    "evolution_round",
    "condition",
    "control",
    "threshold",
    "rewards",
    "round",
    "in_context",
    "scenario",
    "tipping_round",
    "ratio_low",
    "ratio_high",
    "runs",
    "series",
    *RATE_COLUMNS,
    *EFFECT_COLUMNS,
}
Y_RATE = (-0.03, 1.03)
LABEL = {"single": "violation rate", "multi": "collusion rate"}

_DRAWERS: dict[str, tuple] = {}


def _draws(table: str):
    """Registers a figure: the function named as the figure in tipping.paths.FIGURES, drawing one table."""

    def register(function):
        _DRAWERS[function.__name__] = (function, table)
        return function

    return register


def _figure(nrows: int = 1, ncols: int = 1, width: float = 5.0, height: float = 3.6) -> tuple[Figure, np.ndarray]:
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def no_data(what: str) -> Figure:
    fig, axes = _figure()
    ax = axes[0, 0]
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"no data for {what}", ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return fig


def _label(key) -> str:
    return " · ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))


def _colors(keys: list) -> dict:
    return dict(zip(keys, sns.color_palette("colorblind", max(len(keys), 1))))


def _first_evolution_round(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["evolution_round"] == df["evolution_round"].min()] if len(df) else df


def _band(ax, x, df: pd.DataFrame, y: str, color, label: str, linestyle: str = "-", ci: str = "cluster_ci") -> None:
    ax.plot(x, df[y], color=color, linestyle=linestyle, marker="o", markersize=3, label=label)
    ax.fill_between(x, df[f"{ci}_low"], df[f"{ci}_high"], color=color, alpha=0.15, linewidth=0)


def _in_context(rates: pd.DataFrame, testbed: str) -> pd.DataFrame:
    return _first_evolution_round(rates[rates["testbed"] == testbed])


def _panels(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(testbed, its rows at its lowest evolution round) for each testbed present, single first."""
    return [(t, _in_context(df, t)) for t in TESTBEDS if (df["testbed"] == t).any()]


def _with_series(df: pd.DataFrame) -> pd.DataFrame:
    """A `series` column: (model, defence) plus every other group key that varies in `df`
    (decision, extra tags), so runs differing in those never share a line or a heatmap."""
    extra = [c for c in df.columns if c not in NOT_SERIES and c not in SERIES and df[c].nunique(dropna=False) > 1]
    return df.assign(series=df[SERIES + extra].astype(str).apply(tuple, axis=1) if len(df) else None)


CONTROL_STYLES = {"control_no_feedback": "--", "control_supervised": ":", "control_swapped": "-."}


@_draws("rates")
def single_rounds(rates: pd.DataFrame) -> Figure:
    """Violation rate per in-context round, one line per model x defence, 95% CI bands;
    matched control runs dashed (no feedback), dotted (supervised) or dash-dotted (answers listed
    in swapped order) in the same colour."""
    df = _with_series(_in_context(rates, "single"))
    if df.empty:
        return no_data("single_rounds (no single-agent runs)")
    fig, axes = _figure(width=6.5, height=4.2)
    ax = axes[0, 0]
    colors = _colors(sorted(df["series"].unique()))
    for (key, condition), g in df.groupby(["series", "condition"], sort=True):
        control = condition != TREATMENT
        _band(
            ax,
            g["round"],
            g,
            "rate",
            colors[key],
            _label(key) + (f" ({condition})" if control else ""),
            CONTROL_STYLES.get(condition, "--") if control else "-",
        )
    ax.set(
        xlabel="in-context round",
        ylabel="violation rate (valid answers)",
        ylim=Y_RATE,
        title=f"Single agent, evolution round {df['evolution_round'].min()}",
    )
    ax.set_xticks(sorted(df["round"].unique()))
    ax.legend(fontsize=8)
    return fig


@_draws("effects")
def tipping_effect(effects: pd.DataFrame) -> Figure:
    """Treatment minus matched control per round, paired 95% CI, one panel per testbed."""
    panels = _panels(effects[effects["threshold"] == ALL])
    if not panels:
        return no_data("tipping_effect (no control run matches a treatment run)")
    fig, axes = _figure(ncols=len(panels), width=5.5, height=4.0)
    for ax, (testbed, d) in zip(axes[0], panels):
        d = _with_series(d)
        colors = _colors(sorted(d["series"].unique()))
        for (key, control), g in d.groupby(["series", "control"], sort=True):
            _band(ax, g["round"], g, "difference", colors[key], f"{_label(key)} − {control}", ci="ci")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(
            xlabel="in-context round",
            ylabel=f"{LABEL[testbed]}: treatment − control",
            ylim=(-1.05, 1.05),
            title=f"{testbed}: tipping effect",
        )
        ax.set_xticks(sorted(d["round"].unique()))
        ax.legend(fontsize=8)
    return fig


def _multi_cells(rates: pd.DataFrame) -> pd.DataFrame:
    df = _in_context(rates, "multi")
    df = df[(df["threshold"] != ALL) & (df["condition"] == TREATMENT)]
    return _with_series(df.assign(threshold=df["threshold"].astype(int)))


def _reward_facets(df: pd.DataFrame, width: float, height: float, draw) -> Figure:
    """A panel per model x defence (rows) and reward set (columns); draw(ax, cell_frame, title)."""
    series, rewards = sorted(df["series"].unique()), sorted(df["rewards"].unique())
    fig, axes = _figure(len(series), len(rewards), width=width, height=height)
    for i, key in enumerate(series):
        for j, rw in enumerate(rewards):
            draw(
                axes[i, j],
                df[(df["series"] == key) & (df["rewards"] == rw)],
                f"{_label(key)} | rewards {rw}",
                j == len(rewards) - 1,
            )
    return fig


@_draws("rates")
def multi_rounds(rates: pd.DataFrame) -> Figure:
    """Collusion rate per round: a column per reward set, a row per model x defence, hue = threshold."""
    df = _multi_cells(rates)
    if df.empty:
        return no_data("multi_rounds (no multi-agent runs)")
    thresholds = sorted(df["threshold"].unique())
    colors = dict(zip(thresholds, sns.color_palette("viridis", len(thresholds))))

    def draw(ax, d, title, last_column):
        for t, g in d.groupby("threshold", sort=True):
            _band(ax, g["round"], g, "rate", colors[t], f"threshold {t}")
        ax.set(xlabel="round", ylabel="collusion rate", ylim=Y_RATE)
        ax.set_title(title, fontsize=9)  # model · defence | rewards: long for one panel
        ax.set_xticks(sorted(df["round"].unique()))
        ax.legend(fontsize=7)

    return _reward_facets(df, 4.2, 3.4, draw)


@_draws("rates")
def multi_heatmap(rates: pd.DataFrame) -> Figure:
    """Collusion rate, threshold x round, one heatmap per reward set and model x defence."""
    df = _multi_cells(rates)
    if df.empty:
        return no_data("multi_heatmap (no multi-agent runs)")

    def draw(ax, d, title, last_column):
        grid = d.pivot(index="threshold", columns="round", values="rate").sort_index()
        sns.heatmap(
            grid,
            ax=ax,
            vmin=0,
            vmax=1,
            cmap="rocket_r",
            annot=True,
            fmt=".2f",
            cbar=last_column,
            cbar_kws={"label": "collusion rate"},
        )
        ax.set(xlabel="round", ylabel="threshold")
        ax.set_title(title, fontsize=9)

    return _reward_facets(df, 4.0, 3.2, draw)


@_draws("evolution")
def evolution(evo: pd.DataFrame) -> Figure:
    """The tipping curve: rate vs evolution round per model x defence, solid = last in-context
    round, dotted = first (the weights alone), 95% CI bands; a panel per testbed."""
    df = evo[evo["condition"] == TREATMENT]
    if df["evolution_round"].nunique() < 2:
        return no_data("evolution (fewer than two evolution rounds)")
    testbeds = [t for t in TESTBEDS if (df["testbed"] == t).any()]
    fig, axes = _figure(ncols=len(testbeds), width=5.5, height=4.0)
    for ax, testbed in zip(axes[0], testbeds):
        d = _with_series(df[df["testbed"] == testbed])
        colors = _colors(sorted(d["series"].unique()))
        for (key, when), g in d.groupby(["series", "in_context"], sort=True):
            _band(
                ax,
                g["evolution_round"],
                g,
                "rate",
                colors[key],
                f"{_label(key)} ({when} round)",
                "-" if when == "last" else ":",
            )
        ax.set(xlabel="evolution round", ylabel=LABEL[testbed], ylim=Y_RATE, title=f"{testbed}: weight-level evolution")
        ax.set_xticks(sorted(d["evolution_round"].unique()))
        ax.legend(fontsize=7)
    return fig


@_draws("scenario_rates")
def per_scenario(scenarios: pd.DataFrame) -> Figure:
    """Rate per scenario (job / game) and round, scenarios that tip first on top; a row per
    testbed, a column per model x defence."""
    rows = [(t, _with_series(r)) for t, r in _panels(scenarios[scenarios["condition"] == TREATMENT])]
    if not rows:
        return no_data("per_scenario (no treatment runs)")
    series = [sorted(r["series"].unique()) for _, r in rows]
    heights = [1.2 + 0.28 * r["scenario"].nunique() for _, r in rows]  # one heatmap row per scenario
    ncols = max(map(len, series))
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(5.5 * ncols, sum(heights)), layout="constrained")
        axes = fig.subplots(len(rows), ncols, squeeze=False, gridspec_kw={"height_ratios": heights})
    for (testbed, row), keys, axs in zip(rows, series, axes):
        for ax in axs[len(keys) :]:
            ax.set_axis_off()
        for ax, key in zip(axs, keys):
            d = row[row["series"] == key]
            grid = d.pivot(index="scenario", columns="round", values="rate")
            tips = d.groupby("scenario")["tipping_round"].first()
            order = sorted(
                grid.index, key=lambda s: (pd.isna(tips[s]), 0 if pd.isna(tips[s]) else tips[s], -grid.loc[s].mean(), s)
            )
            grid = grid.loc[order]
            grid.index = [s if pd.isna(tips[s]) else f"{s} (tips r{int(tips[s])})" for s in order]
            sns.heatmap(grid, ax=ax, vmin=0, vmax=1, cmap="rocket_r", cbar_kws={"label": LABEL[testbed]})
            ax.set(xlabel="in-context round", ylabel="", title=f"{testbed}: {_label(key)}")
    return fig


@_draws("payoff")
def payoff_ratio(payoff: pd.DataFrame) -> Figure:
    """Single: violation rate at the last in-context round per payoff-ratio bin (violating / compliant)."""
    df = _first_evolution_round(payoff[payoff["condition"] == TREATMENT])
    if df.empty:
        return no_data("payoff_ratio (no single-agent treatment runs)")
    df = _with_series(df[df["round"] == df["round"].max()])
    bins = sorted(set(zip(df["ratio_low"], df["ratio_high"])))
    position = {b: i for i, b in enumerate(bins)}
    fig, axes = _figure(width=6.5, height=4.2)
    ax = axes[0, 0]
    series = sorted(df["series"].unique())
    colors = _colors(series)
    for i, (key, g) in enumerate(df.groupby("series", sort=True)):
        x = [position[b] + 0.12 * (i - (len(series) - 1) / 2) for b in zip(g["ratio_low"], g["ratio_high"])]  # dodge
        yerr = np.vstack([g["rate"] - g["cluster_ci_low"], g["cluster_ci_high"] - g["rate"]])  # (2, n): below, above
        ax.errorbar(
            x, g["rate"].to_numpy(), yerr=yerr, fmt="o", markersize=4, capsize=2, color=colors[key], label=_label(key)
        )
    ax.set_xticks(
        range(len(bins)),
        [f"≥{lo:g}" if hi == np.inf else f"<{hi:g}" if lo == 0 else f"{lo:g}–{hi:g}" for lo, hi in bins],
    )
    ax.set(
        xlabel="payoff ratio (violating / compliant)",
        ylabel="violation rate",
        ylim=Y_RATE,
        title=f"Single agent, in-context round {df['round'].max()}",
    )
    ax.legend(fontsize=8)
    return fig


@_draws("rates")
def invalid_rate(rates: pd.DataFrame) -> Figure:
    """Share of invalid answers (solid) and of truncated ones among them (dashed) per in-context
    round, one panel per testbed (cells pooled)."""
    panels = _panels(rates[(rates["threshold"] == ALL) & (rates["condition"] == TREATMENT)])
    if not panels:
        return no_data("invalid_rate (no treatment runs)")
    fig, axes = _figure(ncols=len(panels), width=5.0, height=3.8)
    for ax, (testbed, d) in zip(axes[0], panels):
        d = _with_series(d)
        colors = _colors(sorted(d["series"].unique()))
        for key, g in d.groupby("series", sort=True):
            ax.plot(g["round"], g["invalid_rate"], marker="o", markersize=3, color=colors[key], label=_label(key))
            if g["truncated_rate"].fillna(0).any():
                ax.plot(g["round"], g["truncated_rate"], linestyle="--", color=colors[key])
        ax.set(
            xlabel="in-context round",
            ylabel="invalid-answer rate (dashed: truncated)",
            ylim=Y_RATE,
            title=f"{testbed}: unparseable or truncated answers",
        )
        ax.set_xticks(sorted(d["round"].unique()))
        ax.legend(fontsize=8)
    return fig


# figure (tipping.paths.FIGURES, in its order) -> (function, the table it draws)
DRAW = {name: _DRAWERS[name] for name in FIGURES}


def read_table(tables: Path, name: str) -> pd.DataFrame:
    # text stays text: "none", "NA" or "all" are values here, not missing data
    return pd.read_csv(
        Path(tables) / f"{name}.csv",
        keep_default_na=False,
        na_values=[""],
        dtype={"threshold": str, "rewards": str, "model": str, "defence": str, "condition": str},
    )


def save(fig: Figure, png: Path) -> Path:
    """PNG + PDF, byte-identical on rerun (no Software/CreationDate metadata)."""
    png = Path(png)
    pdf = png.with_suffix(".pdf")
    for path, fmt, meta in ((png, "png", {"Software": None}), (pdf, "pdf", {"CreationDate": None})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata=meta)
        atomic_write_bytes(path, buffer.getvalue())
    return pdf
