"""Run folders -> the analysis tables. Every interval comes from tipping.metrics; this module groups.

    records.parquet           every turn of every run + the run's tags and config fields as columns
                              (tipping.analysis.run_records reads the run folders)
    prompts.parquet           prompt_sha -> message_ids: the conversation each turn was given
    messages.parquet          message_id -> role, content (each distinct message once: a round's
                              prompt repeats every earlier round, so storing prompts whole is O(R^2))
    rates.csv/.md             deviant rate per run group x grid cell x round, Wilson and cluster 95% CIs
    effects.csv/.md           treatment minus each matched control per round, paired 95% CI and p-value
    tipping_rounds.csv/.md    in-context and weight-level (evolution) tipping rounds
    evolution.csv             the rate at the first and the last in-context round, per evolution round
    scenario_rates.csv        the rate per scenario (job / game) and round, with its tipping round
    payoff.csv                single: the violation rate per payoff-ratio bin (violating / compliant)
    paper_comparison.csv/.md  our rates next to what upstream's code prints for the same records
    summary.json              a few key numbers (DVC metrics)
    plot_rates.csv            series, round, rate, CI (DVC plots)

A run group is the runs sharing testbed, decision and every tag but `replicate` (replicates are
pooled). An untagged run reads as defence=none, evolution_round=0, condition=treatment and
model=<policy id>. Multi-agent rates are per grid cell (threshold, reward set) and pooled over the
cells (threshold = rewards = "all"; single and population rows are "all" only); confederates are
never counted. A rate is deviant / valid answers (multi: the E·n denominator that upstream's code
lost), its `metric` violation (single), collusion (multi) or adoption (population: the free agents'
collective choices, the population report's adoption pooled over episodes); invalid answers
(unparseable or truncated) get their own rate, truncated ones theirs too. Decisions of one episode
(a single-agent item, also across replicates) are correlated: every rate has a cluster interval and
design effect next to Wilson's, and tipping rounds and figures use the cluster interval
(tipping.metrics). Files are byte-deterministic: sorted rows, floats rounded to 6 dp.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import pandas as pd

from tipping import metrics, paths
from tipping.analysis.run_records import load_runs
from tipping.outputs import atomic_write_bytes, atomic_write_text, write_json

MAIN_TAGS = ("model", "defence", "evolution_round", "condition")
POOLED_TAGS = ("replicate",)  # runs differing only in these are one group
TREATMENT, ALL = "treatment", "all"
CELL = ["threshold", "rewards"]
METRIC = {"single": "violation", "multi": "collusion", "population": "adoption"}  # deviant = the collective choice
DECIMALS = 6
RATE_COLUMNS = [
    "rate",
    "ci_low",
    "ci_high",
    "cluster_ci_low",
    "cluster_ci_high",
    "design_effect",
    "n_clusters",
    "k",
    "n",
    "n_total",
    "invalid_rate",
    "invalid_ci_low",
    "invalid_ci_high",
    "truncated_rate",
    "truncated_ci_low",
    "truncated_ci_high",
    "mean_p",
    "p_ci_low",
    "p_ci_high",
]
EFFECT_COLUMNS = [
    "treatment_rate",
    "control_rate",
    "difference",
    "ci_low",
    "ci_high",
    "interval",
    "p_value",
    "test",
    "n_pairs",
    "n_clusters",
]  # metrics.paired_difference


def group_keys(tags: list[str]) -> list[str]:
    extra = sorted(set(tags) - set(MAIN_TAGS) - set(POOLED_TAGS))
    return ["testbed", *MAIN_TAGS, "decision", *extra]


def _without(keys: list[str], *names: str) -> list[str]:
    return [k for k in keys if k not in names]


# ---------------------------------------------------------------- rates


def _cell_order(value) -> float:
    return math.inf if value == ALL else float(value)


def _sorted(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    key = lambda s: s.map(_cell_order) if s.name == "threshold" else s  # noqa: E731 -- "10" after "8", "all" last
    return df.sort_values(cols, key=key, kind="mergesort", na_position="last").reset_index(drop=True)


def counted_turns(records: pd.DataFrame) -> pd.DataFrame:
    """The turns a rate counts (no confederates), with threshold/rewards as text: a multi turn
    appears twice, in its own grid cell and in the pooled cell "all"."""
    turns = records
    if "confederate" in records:
        turns = records[~records["confederate"].fillna(False).astype(bool)]
    pooled = turns.assign(threshold=ALL, rewards=ALL)
    multi = turns[turns["testbed"] == "multi"]
    cells = multi.assign(threshold=multi["threshold"].astype(str)) if len(multi) else multi
    return pd.concat([cells, pooled], ignore_index=True)


def _summary(frame: pd.DataFrame) -> dict:
    truncated = frame["truncated"].fillna(False) if "truncated" in frame else [False] * len(frame)  # older runs
    records = [
        {
            "valid": bool(v),
            "deviant": d,
            "p_deviant": None if pd.isna(p) else float(p),
            "episode": e,
            "truncated": bool(t),
        }
        for v, d, p, e, t in zip(frame["valid"], frame["deviant"], frame["p_deviant"], frame["episode"], truncated)
    ]
    return metrics.rate_summary(records)


def _rate_table(turns: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rows = []
    for key, g in turns.groupby(by, dropna=False, sort=False):
        s = _summary(g)
        rows.append({**dict(zip(by, key)), **{c: s.get(c) for c in RATE_COLUMNS}, "runs": g["run"].nunique()})
    out = pd.DataFrame(rows, columns=[*by, *RATE_COLUMNS, "runs"])
    out.insert(1, "metric", out["testbed"].map(METRIC))
    return _sorted(out, by)


def rates(turns: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return _rate_table(turns, keys + CELL + ["round"])


def effects(turns: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The tipping effect: treatment minus each matched control (a group with the same keys but
    the condition), per round and cell, paired: the turns with the same replicate, episode, agent
    and round that both answered validly, through metrics.paired_difference (as `tipping compare`)."""
    match, pair = _without(keys, "condition"), [t for t in POOLED_TAGS if t in turns] + ["episode", "agent"]
    valid = turns[turns["valid"].fillna(False).astype(bool)]
    columns = [*match, *CELL, "round", *pair, "deviant"]
    treated = valid.loc[valid["condition"] == TREATMENT, columns]
    controls = valid.loc[valid["condition"] != TREATMENT, [*columns, "condition"]]
    controls = controls.rename(columns={"condition": "control"})
    m = treated.merge(controls, on=[*match, *CELL, "round", *pair], suffixes=("_t", "_c"))
    by = [*match, "control", *CELL, "round"]
    rows = [
        {
            **dict(zip(by, key)),
            **metrics.paired_difference(g["episode"], g["deviant_t"].astype(bool), g["deviant_c"].astype(bool)),
        }
        for key, g in m.groupby(by, dropna=False, sort=False)
    ]
    out = pd.DataFrame(rows, columns=[*by, *EFFECT_COLUMNS])
    out.insert(1, "metric", out["testbed"].map(METRIC))
    return _sorted(out, by)


def evolution(rates: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Pooled rates at the first in-context round (the weights alone: no feedback seen yet) and
    the last (weights + in-context drift), for every evolution round."""
    pooled = rates[rates["threshold"] == ALL]
    grouped = pooled.groupby(keys, dropna=False)["round"]
    first = pooled[pooled["round"] == grouped.transform("min")].assign(in_context="first")
    last = pooled[pooled["round"] == grouped.transform("max")].assign(in_context="last")
    series = _without(keys, "evolution_round")
    cols = [*series, "in_context", "evolution_round", "round", "metric", *RATE_COLUMNS, "runs"]
    return _sorted(pd.concat([first, last])[cols], [*series, "in_context", "evolution_round"])


def _tipping(points: pd.DataFrame, x: str) -> int | None:
    points = points.sort_values(x)
    found = metrics.tipping_round(
        points[x].tolist(),
        [None if pd.isna(r) else r for r in points["rate"]],
        points["cluster_ci_low"].tolist(),
        points["cluster_ci_high"].tolist(),
    )
    return None if found is None else int(found)


def tipping_rounds(rates: pd.DataFrame, evolution: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """In-context: metrics.tipping_round (cluster intervals) over the in-context rounds of each group
    and cell. Weight-level: the first evolution round whose cluster CI lies wholly above evolution round 0's
    (the same rule over evolution rounds), at the first and at the last in-context round."""
    rows = []
    for key, g in rates.groupby(keys + CELL, dropna=False, sort=False):
        g = g.sort_values("round")
        rows.append(
            {
                **dict(zip(keys + CELL, key)),
                "kind": "in-context",
                "tipping_round": _tipping(g, "round"),
                "baseline_rate": g["rate"].iloc[0],
                "final_rate": g["rate"].iloc[-1],
            }
        )
    series = _without(keys, "evolution_round") + ["in_context"]
    for key, g in evolution.groupby(series, dropna=False, sort=False):
        g = g.sort_values("evolution_round")
        if len(g) < 2 or g["evolution_round"].iloc[0] != 0:  # needs the un-evolved policy as baseline
            continue
        rows.append(
            {
                **dict(zip(series, key)),
                "threshold": ALL,
                "rewards": ALL,
                "kind": "weight-level",
                "tipping_round": _tipping(g, "evolution_round"),
                "baseline_rate": g["rate"].iloc[0],
                "final_rate": g["rate"].iloc[-1],
            }
        )
    cols = ["kind", *keys, *CELL, "in_context", "tipping_round", "baseline_rate", "final_rate"]
    out = pd.DataFrame(rows, columns=cols)
    out["tipping_round"] = out["tipping_round"].astype("Int64")
    return _sorted(out, cols[:-3])


def scenario_rates(turns: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rates per scenario (all cells pooled) and round, plus each scenario's tipping round."""
    out = _rate_table(turns[turns["threshold"] == ALL], keys + ["scenario", "round"])
    tips = {k: _tipping(g, "round") for k, g in out.groupby(keys + ["scenario"], dropna=False, sort=False)}
    out["tipping_round"] = pd.array([tips[k] for k in zip(*(out[c] for c in keys + ["scenario"]))], dtype="Int64")
    return out


PAYOFF_BINS = (0.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, math.inf)  # upstream gaps are often tiny: 2.1 vs 2.0


def payoff(turns: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Single: the violation rate per payoff-ratio bin (violating / compliant, [low, high)) and round."""
    single = turns[(turns["testbed"] == "single") & (turns["threshold"] == ALL)]
    if single.empty:
        return pd.DataFrame(columns=[*keys, "ratio_low", "ratio_high", "round", "metric", *RATE_COLUMNS, "runs"])
    single = single[single["compliant_reward"] > 0]
    ratio = single["violating_reward"] / single["compliant_reward"]
    bins = pd.cut(ratio, PAYOFF_BINS, right=False)
    single = single.assign(ratio_low=[b.left for b in bins], ratio_high=[b.right for b in bins])
    return _rate_table(single, keys + ["ratio_low", "ratio_high", "round"])


def paper_comparison(records: pd.DataFrame, rates: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Treatment rates next to the number upstream's scripts print for the same records:
    single (test_sa) = violations / all answers, an unreadable answer counting as no violation;
    multi (test_ma) = collective choices summed over the E games of a cell (confederates too)
    / n agents, the denominator bug: E x the rate, which can exceed 1. Upstream parses with its
    own regexes; the `parser` column says which parser our records used (`--parser paper`
    reproduces upstream's)."""
    group = _without(keys, "condition")
    on = group + CELL + ["round"]
    t = rates[(rates["condition"] == TREATMENT) & ((rates["testbed"] == "single") | (rates["threshold"] != ALL))]
    t = t.assign(upstream_equivalent=t["k"] / t["n_total"])
    multi = records[(records["testbed"] == "multi") & (records["condition"] == TREATMENT)]
    if len(multi):
        multi = multi.assign(
            threshold=multi["threshold"].astype(str),
            collective=(multi["deviant"].fillna(False)).astype(int),
            game=multi["run"] + "\x1f" + multi["episode"],
        )
        g = (
            multi.groupby(on, dropna=False)
            .agg(
                collective=("collective", "sum"),
                turns=("collective", "size"),
                games=("game", "nunique"),
                runs=("run", "nunique"),
            )
            .reset_index()
        )
        g["upstream_ma"] = g["collective"] / (g["turns"] / g["games"] * g["runs"])  # per-run value, runs averaged
        t = t.merge(g[on + ["upstream_ma"]], on=on, how="left")
        t["upstream_equivalent"] = t["upstream_ma"].where(t["testbed"] == "multi", t["upstream_equivalent"])
    parsers = records.groupby(group, dropna=False)["parser"].agg(lambda s: ",".join(sorted(s.dropna().unique())))
    t = t.merge(parsers.rename("parser").reset_index(), on=group, how="left")
    t["upstream_definition"] = t["testbed"].map(
        {"single": "test_sa: violations / all answers", "multi": "test_ma: collective over E games / n"}
    )
    cols = group + [
        "metric",
        "parser",
        *CELL,
        "round",
        "rate",
        "ci_low",
        "ci_high",
        "n",
        "invalid_rate",
        "upstream_equivalent",
        "upstream_definition",
    ]
    return _sorted(t[cols], on)


def plot_rates(rates: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Long series/round/rate rows (all cells pooled) for DVC `plots:` (x: round, y: rate), with the
    cluster interval the figures draw."""
    pooled = rates[rates["threshold"] == ALL]
    label = pooled[keys].astype(str).agg("/".join, axis=1)
    return pd.DataFrame(
        {
            "series": label,
            "round": pooled["round"],
            "rate": pooled["rate"],
            "cluster_ci_low": pooled["cluster_ci_low"],
            "cluster_ci_high": pooled["cluster_ci_high"],
        }
    ).reset_index(drop=True)


def summary(
    records: pd.DataFrame, rates: pd.DataFrame, tipping: pd.DataFrame, effects: pd.DataFrame, keys: list[str]
) -> dict:
    """Small, stable numbers for `dvc metrics`: per treatment group (cells pooled) the first and
    last round's rate (the last with its cluster CI and design effect), the in-context tipping
    round and the last round's paired effect per control."""
    match = _without(keys, "condition")
    label = lambda row: "/".join(str(row[k]) for k in match)  # noqa: E731
    last_round = lambda df, by: df[df["round"] == df.groupby(by, dropna=False)["round"].transform("max")]  # noqa: E731
    pooled = effects[effects["threshold"] == ALL]
    last_effects = {}
    for row in last_round(pooled, match + ["control"]).to_dict("records"):
        last_effects.setdefault(label(row), {})[row["control"]] = {
            k: _num(row[k]) for k in ("difference", "ci_low", "ci_high", "p_value")
        }
    treated = rates[(rates["condition"] == TREATMENT) & (rates["threshold"] == ALL)]
    last_rates = {label(row): row for row in last_round(treated, keys).to_dict("records")}
    groups = {}
    ic = tipping[
        (tipping["kind"] == "in-context") & (tipping["condition"] == TREATMENT) & (tipping["threshold"] == ALL)
    ]
    for row in ic.to_dict("records"):
        last = last_rates[label(row)]
        groups[label(row)] = {
            "first_round_rate": _num(row["baseline_rate"]),
            "last_round_rate": _num(row["final_rate"]),
            "last_round_cluster_ci": [_num(last["cluster_ci_low"]), _num(last["cluster_ci_high"])],
            "last_round_design_effect": _num(last["design_effect"]),
            "tipping_round": None if pd.isna(row["tipping_round"]) else int(row["tipping_round"]),
            "last_round_effect": last_effects.get(label(row), {}),
        }
    return {"runs": int(records["run"].nunique()), "turns": len(records), "groups": groups}


def _num(x):
    return None if pd.isna(x) else round(float(x), DECIMALS)


# ---------------------------------------------------------------- writing


def _csv(df: pd.DataFrame) -> str:
    floats = df.select_dtypes("float").columns
    return df.assign(**{c: df[c].round(DECIMALS) for c in floats}).to_csv(index=False, lineterminator="\n")


def _md_cell(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(df: pd.DataFrame, title: str, note: str) -> str:
    lines = [f"# {title}", "", note, "", "| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _interval(low, high) -> str:
    return "" if pd.isna(low) else f"[{low:.2f}, {high:.2f}]"


def _by_round(df: pd.DataFrame, rows: list[str], cell) -> pd.DataFrame:
    """One line per `rows` group, one column per in-context round, each cell `cell(row)`: the
    compact form a reader opens first (the CSV keeps every column). Tags with one value are left out."""
    pooled = df[(df["threshold"] == ALL) & (df["rewards"] == ALL)] if "threshold" in df else df
    rows = [
        c
        for c in dict.fromkeys(rows)
        if c in ("testbed", "condition", "control") or pooled[c].nunique(dropna=False) > 1
    ]
    rounds = sorted(pooled["round"].unique(), key=_cell_order)
    lines = []
    for key, g in pooled.groupby(rows, sort=False, dropna=False):
        cells = {f"round {r}": cell(row) for r, row in zip(g["round"], g.to_dict("records"))}
        lines.append(
            {
                **dict(zip(rows, key if isinstance(key, tuple) else (key,))),
                **{f"round {r}": cells.get(f"round {r}", "") for r in rounds},
            }
        )
    return pd.DataFrame(lines, columns=[*rows, *(f"round {r}" for r in rounds)])


def compact_rates(rates: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Condition x round: rate [cluster 95% CI] (valid answers), every grid cell pooled."""
    return _by_round(
        _sorted(rates, ["testbed", *keys, "round"]),
        ["testbed", *keys],
        lambda r: (
            f"{r['rate']:.2f} {_interval(r['cluster_ci_low'], r['cluster_ci_high'])} n={int(r['n'])}"
            if r["n"]
            else "n=0"
        ),
    )


def compact_effects(effects: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Control x round: treatment - control [paired 95% CI], p."""
    rows = ["testbed", *_without(keys, "condition"), "control"]
    return _by_round(
        _sorted(effects, [*rows, "round"]),
        rows,
        lambda r: (
            f"{r['difference']:+.2f} {_interval(r['ci_low'], r['ci_high'])} p={r['p_value']:.2g}"
            if not pd.isna(r["difference"])
            else ""
        ),
    )


def _parquet(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()


NOTES = {
    "rates": "Compact: one line per group, `rate [cluster 95% CI] n=valid answers` per round, every grid cell "
    "pooled; rates.csv has every column and cell. rate = deviant / valid answers (single: violation, "
    "multi: collusion, E·n denominator; population: adoption, the free agents' collusion), "
    "Wilson 95% CI (independent answers) and cluster 95% CI (Wilson at n / design_effect; clusters = "
    "episodes, a single-agent item over replicates is one; n_clusters of them); invalid_rate = "
    "answers with no decision read (unparseable or truncated) / all answers, truncated_rate = answers "
    "cut by max_new_tokens or the context (never parsed) / all answers, each with a Wilson 95% CI; "
    "mean_p = mean P(deviant) (forced choice) with a cluster bootstrap "
    "95% CI; threshold/rewards `all` = every grid cell pooled.",
    "effects": "Compact: `difference [95% CI] p` per round, grid cells pooled (effects.csv: every column). "
    "difference = treatment rate - control rate per round over paired answers (same replicate, "
    "episode, agent, round; both valid), 95% CI by `interval` (newcombe_paired: Newcombe 1998 "
    "method 10; cluster_bootstrap: over episodes) and p-value by `test` (mcnemar; clustered_mcnemar: "
    "Durkalski 2003); a control is a run group with the same tags except `condition`.",
    "tipping_rounds": "in-context: the first round whose cluster CI lies wholly above round 1's; weight-level: "
    "the first evolution round whose cluster CI lies wholly above evolution round 0's, "
    "measured at the first (`in_context` first: weights alone) or last in-context round. "
    "Blank = no tip.",
    "paper_comparison": "No number from the paper is transcribed here (none could be verified). "
    "`upstream_equivalent` is what the upstream scripts would print for these same "
    "records (single: an invalid answer counted as no violation; multi: collective "
    "choices / n instead of / (E·n), i.e. E x the rate: 7x with upstream's 7 games); "
    "`rate` is the corrected value with its 95% CI.",
}


def build(run_dirs: list[str]) -> dict[str, object]:
    """Every table, in memory (tests call this; `write` puts them on disk)."""
    records, prompts, messages, tags = load_runs(run_dirs)
    keys = group_keys(tags)
    turns = counted_turns(records)
    r = rates(turns, keys)
    evo = evolution(r, keys)
    tips = tipping_rounds(r, evo, keys)
    eff = effects(turns, keys)
    typed = lambda df: df.astype({t: records[t].dtype for t in tags if t in df})  # noqa: E731
    tips, evo, eff = typed(tips), typed(evo), typed(eff)  # NA-holding tag columns came back as floats
    return {
        "records": records,
        "prompts": prompts,
        "messages": messages,
        "keys": keys,
        "rates": r,
        "effects": eff,
        "tipping_rounds": tips,
        "evolution": evo,
        "scenario_rates": scenario_rates(turns, keys),
        "payoff": payoff(turns, keys),
        "paper_comparison": paper_comparison(records, r, keys),
        "plot_rates": plot_rates(r, keys),
        "summary": summary(records, r, tips, eff, keys),
    }


def write(tables: dict, out: Path) -> None:
    """Exactly the files the workflow declares (paths.TABLE_FILES), each from the table of its stem."""
    out = Path(out)
    for name in paths.TABLE_FILES:
        stem, ext = os.path.splitext(name)
        if ext == ".parquet":
            atomic_write_bytes(out / name, _parquet(tables[stem]))
        elif ext == ".csv":
            atomic_write_text(out / name, _csv(tables[stem]))
        elif ext == ".md":
            compact = {"rates": compact_rates, "effects": compact_effects}.get(stem)
            table = compact(tables[stem], tables["keys"]) if compact else tables[stem]
            atomic_write_text(out / name, markdown(table, stem.replace("_", " ").capitalize(), NOTES[stem]))
        elif ext == ".json":
            write_json(out / name, tables[stem])
        else:
            raise ValueError(f"paths.TABLE_FILES: no writer for {name}")
