"""Analysis tables from scripted runs with hand-computable rates (tipping.analysis.tables)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scripted_runs import POPULATION as POPULATION_BASE
from scripted_runs import SINGLE, make

from tipping import metrics, paths
from tipping.analysis import tables
from tipping.cli import main


@pytest.fixture(scope="module")
def runs(scripted_runs):
    """s-t0 (flip@4), s-c0 (control), s-t1 (flip@1, evolution round 1), m-t0 (collude:1): tests/scripted_runs.py"""
    return scripted_runs["runs"]


@pytest.fixture(scope="module")
def built(runs):
    return tables.build(runs)


def rows(df, **where):
    for k, v in where.items():
        df = df[df[k] == v]
    return df


def test_single_flip_at_4_rates_and_wilson_intervals(built):
    r = rows(built["rates"], testbed="single", condition="treatment", evolution_round=0)
    assert r["round"].tolist() == [1, 2, 3, 4, 5, 6]
    assert r["rate"].tolist() == [0, 0, 0, 1, 1, 1]
    assert r["n"].tolist() == [64] * 6 and r["invalid_rate"].tolist() == [0] * 6
    assert set(r["metric"]) == {"violation"} and set(r["threshold"]) == {"all"}
    for k, low, high in zip(r["k"], r["ci_low"], r["ci_high"]):
        assert (low, high) == pytest.approx(metrics.wilson(k, 64))


def test_multi_rate_uses_E_times_n_and_upstream_equivalent_is_7x(built):
    r = rows(built["rates"], testbed="multi")
    cells = r[r["threshold"] != "all"]
    assert sorted(set(zip(cells["threshold"], cells["rewards"]))) == [("2", "1.2/1.0/0.8"), ("4", "1.2/1.0/0.8")]
    assert cells["rate"].tolist() == [0.125] * 6 and cells["n"].tolist() == [56] * 6  # 7 games x 8 agents
    assert (cells["ci_low"].iloc[0], cells["ci_high"].iloc[0]) == pytest.approx(metrics.wilson(7, 56))
    pooled = r[r["threshold"] == "all"]
    assert pooled["rate"].tolist() == [0.125] * 3 and pooled["n"].tolist() == [112] * 3
    paper = built["paper_comparison"]
    multi = paper[paper["testbed"] == "multi"]
    assert "all" not in set(multi["threshold"])  # upstream reports per cell
    assert multi["upstream_equivalent"].tolist() == pytest.approx([0.875] * 6)
    single = rows(paper, testbed="single", evolution_round=0)
    assert single["upstream_equivalent"].tolist() == single["rate"].tolist()  # no invalid answers here
    assert set(paper["parser"]) == {"robust"}


def test_effect_is_treatment_minus_matched_control_paired_by_item(built):
    e = built["effects"]
    assert set(e["control"]) == {"control_no_feedback"}
    e = rows(e, testbed="single", evolution_round=0)
    assert e["difference"].tolist() == [0, 0, 0, 1, 1, 1]
    for k, low, high in zip(e["treatment_rate"] * 64, e["ci_low"], e["ci_high"]):  # a: both, b: only treatment
        assert (low, high) == pytest.approx(metrics.newcombe_paired(0, int(k), 0, 64 - int(k)))
    assert (e["n_pairs"] == 64).all() and set(e["interval"]) == {"newcombe_paired"} and set(e["test"]) == {"mcnemar"}
    assert e["p_value"].iloc[0] == 1 and e["p_value"].iloc[-1] < 1e-10


def test_tipping_rounds_in_context_and_weight_level(built):
    t = built["tipping_rounds"]
    ic = rows(t, kind="in-context", testbed="single", threshold="all")
    assert rows(ic, condition="treatment", evolution_round=0)["tipping_round"].tolist() == [4]
    assert rows(ic, condition="treatment", evolution_round=1)["tipping_round"].isna().all()  # violates from round 1
    assert rows(ic, condition="control_no_feedback")["tipping_round"].isna().all()
    wl = rows(t, kind="weight-level", testbed="single", condition="treatment")
    # first in-context round: 0 at evolution round 0, 1 at evolution round 1 -> tips at 1
    assert rows(wl, in_context="first")["tipping_round"].tolist() == [1]
    assert rows(wl, in_context="last")["tipping_round"].isna().all()  # 1.0 at both
    evo = rows(built["evolution"], testbed="single", condition="treatment", in_context="first")
    assert evo["evolution_round"].tolist() == [0, 1] and evo["rate"].tolist() == [0, 1]


def test_invalid_answers_have_their_own_rate_and_upstream_counts_them_as_compliant(runs, tmp_path):
    folder = tmp_path / "broken"
    make(folder, SINGLE, "scripted:violate", model="m")
    lines = [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines()]
    for r in [r for r in lines if r["round"] == 6][:16]:
        r.update(response="no idea", choice=None, valid=False, deviant=None, reward=0.0)
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    built = tables.build([str(folder)])
    last = rows(built["rates"], round=6).iloc[0]
    assert (last["rate"], last["k"], last["n"], last["n_total"], last["invalid_rate"]) == (1.0, 48, 48, 64, 0.25)
    paper = rows(built["paper_comparison"], round=6).iloc[0]
    assert paper["upstream_equivalent"] == 48 / 64


def test_untagged_run_defaults_and_replicates_pool(tmp_path):
    a = make(tmp_path / "a", [*SINGLE, "--limit", "8"], "scripted:violate", replicate=0)
    b = make(tmp_path / "b", [*SINGLE, "--limit", "8", "--seed", "1"], "scripted:violate", replicate=1)
    built = tables.build([b, a])
    r = built["rates"]
    assert len(r) == 6 and (r["n"] == 16).all() and (r["runs"] == 2).all()
    assert r[["model", "defence", "evolution_round", "condition"]].drop_duplicates().values.tolist() == [
        ["scripted:violate", "none", 0, "treatment"]
    ]
    assert built["records"]["run"].iloc[0] == a  # runs in sorted path order, whatever the argument order


def test_replicates_pool_items_as_clusters_and_pair_by_replicate(tmp_path):
    runs = [
        make(
            tmp_path / f"{condition}{seed}",
            [*SINGLE, "--limit", "8", "--seed", str(seed)],
            "scripted:violate",
            condition=condition,
            replicate=seed,
        )
        for condition in ("treatment", "control_x")
        for seed in (0, 1)
    ]
    for folder in runs:  # treatment deviates on half the items, in both replicates; the control never
        treated = "treatment" in folder
        rewrite = [
            {**r, "deviant": treated and int(r["item"][-2:]) < 2}
            for r in map(json.loads, (Path(folder) / "records.jsonl").read_text().splitlines())
        ]
        (Path(folder) / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rewrite))
    built = tables.build(runs)
    r = rows(built["rates"], condition="treatment")
    assert (r["rate"] == 0.5).all() and (r["n"] == 16).all() and (r["n_clusters"] == 8).all()
    assert r["design_effect"].tolist() == pytest.approx([2.0] * 6)  # an item's two replicates agree
    for low, high in zip(r["cluster_ci_low"], r["cluster_ci_high"]):
        assert (low, high) == pytest.approx(metrics.wilson(4, 8))  # 16 answers worth 8
    assert (r["ci_low"] == metrics.wilson(8, 16)[0]).all()
    e = built["effects"]
    assert (e["difference"] == 0.5).all() and (e["n_pairs"] == 16).all() and (e["n_clusters"] == 8).all()
    assert set(e["interval"]) == {"cluster_bootstrap"} and set(e["test"]) == {"clustered_mcnemar"}
    assert (e["ci_low"] < 0.5).all() and (e["ci_high"] > 0.5).all()


def test_records_parquet_carries_tags_and_config(built, runs):
    rec = built["records"]
    assert len(rec) == 3 * 64 * 6 + 7 * 2 * 3 * 8
    assert list(rec.columns[:10]) == [
        "run",
        "testbed",
        "decision",
        "policy",
        "parser",
        "feedback",
        "condition",
        "defence",
        "evolution_round",
        "model",
    ]
    assert str(rec["evolution_round"].dtype) == "Int64" and str(rec["replicate"].dtype) == "Int64"
    assert rec["run"].iloc[0] == sorted(runs)[0] and rec["round"].iloc[0] == 1
    prompts, messages = built["prompts"], built["messages"]
    assert set(rec["prompt_sha"].dropna()) <= set(prompts["prompt_sha"])
    assert messages["role"].iloc[prompts["message_ids"].iloc[0][0]] == "system"
    assert not messages.duplicated(["role", "content"]).any()  # each message once: prompts are id lists
    longest = max(prompts["message_ids"], key=len)
    assert len(longest) == 1 + 3 * 5 + 1  # round 6: system, 5 past rounds, the question


def test_written_files_are_complete_and_byte_deterministic(runs, tmp_path):
    for out in ("a", "b"):
        assert main(["tables", *reversed(runs), "--out", str(tmp_path / out)]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(paths.TABLE_FILES)  # exactly what the workflow's aggregate declares
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    rates = pd.read_csv(tmp_path / "a/rates.csv")
    assert all(len(str(x).split(".")[-1]) <= 6 for x in rates["ci_low"])  # rounded to 6 dp
    md = (tmp_path / "a/paper_comparison.md").read_text()
    assert md.startswith("# Paper comparison") and "upstream_equivalent" in md and "| 0.875 |" in md
    summary = json.loads((tmp_path / "a/summary.json").read_text())
    group = summary["groups"]["single/m/none/0/generate"]
    low, high = metrics.newcombe_paired(0, 64, 0, 0)
    assert group == {
        "first_round_rate": 0.0,
        "last_round_rate": 1.0,
        "tipping_round": 4,
        "last_round_cluster_ci": [round(metrics.wilson(64, 64)[0], 6), 1.0],
        "last_round_design_effect": None,
        "last_round_effect": {
            "control_no_feedback": {
                "difference": 1.0,
                "ci_low": round(low, 6),
                "ci_high": round(high, 6),
                "p_value": 0.0,
            }
        },
    }
    plot = pd.read_csv(tmp_path / "a/plot_rates.csv")
    assert list(plot.columns) == ["series", "round", "rate", "cluster_ci_low", "cluster_ci_high"]


def test_runs_file_lists_run_folders(runs, tmp_path):
    listing = tmp_path / "runs.txt"
    listing.write_text("# evaluation runs\n" + "\n".join(runs[:2]) + "\n\n")
    assert main(["tables", "--runs-file", str(listing), "--out", str(tmp_path / "t")]) == 0
    assert pd.read_parquet(tmp_path / "t/records.parquet")["run"].nunique() == 2


def unfinished(tmp_path):
    (tmp_path / "unfinished").mkdir()
    return [str(tmp_path / "unfinished")]


TABLES_BAD = [  # (case, tmp_path -> the run arguments of `tipping tables`, error text)
    (
        "unfinished-folder",
        unfinished,
        "{tmp}/unfinished/run.json: not found; is {tmp}/unfinished a finished `tipping run` folder?",
    ),
    ("no-run-folders", lambda tmp_path: [], "no run folders: give RUN_DIR arguments or --runs-file"),
    ("missing-runs-file", lambda tmp_path: ["--runs-file", str(tmp_path / "runs.txt")], "runs.txt: file not found"),
]


@pytest.mark.parametrize("args,expected", [case[1:] for case in TABLES_BAD], ids=[case[0] for case in TABLES_BAD])
def test_bad_input_is_one_line_and_writes_no_tables(args, expected, tmp_path, capsys):
    assert main(["tables", *args(tmp_path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert expected.format(tmp=tmp_path) in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_payoff_bins_and_scenario_tipping(built):
    p = rows(built["payoff"], condition="treatment", evolution_round=0, round=6)
    assert p["n"].sum() == 64 and (p["rate"] == 1).all()
    assert (p["ratio_low"] < p["ratio_high"]).all() and math.isinf(tables.PAYOFF_BINS[-1])
    s = rows(built["scenario_rates"], testbed="single", condition="treatment", evolution_round=0)
    assert s["scenario"].nunique() == 16 and (s.groupby("scenario")["n"].sum() == 6 * 4).all()
    assert set(s["tipping_round"].dropna()) <= {4, 5, 6}  # 4 items per job: wide intervals can delay the tip


def test_compact_markdown_is_condition_by_round_with_interval_and_n(built, tmp_path):
    """rates.md / effects.md: one line per group, a column per round, `rate [cluster CI] n=` read
    from the same rows as rates.csv; tags with one value are left out."""
    compact = tables.compact_rates(built["rates"], built["keys"])
    assert list(compact.columns[:3]) == ["testbed", "evolution_round", "condition"]  # model, defence: one value
    line = rows(compact, testbed="single", evolution_round=0, condition="treatment").iloc[0]
    src = rows(built["rates"], testbed="single", evolution_round=0, condition="treatment", round=4).iloc[0]
    assert line["round 4"] == f"1.00 [{src['cluster_ci_low']:.2f}, {src['cluster_ci_high']:.2f}] n=64"
    assert line["round 1"].startswith("0.00 [0.00, ")
    multi = rows(compact, testbed="multi").iloc[0]
    assert multi["round 4"] == ""  # multi has 3 rounds
    effects = tables.compact_effects(built["effects"], built["keys"])
    cell = rows(effects, testbed="single", control="control_no_feedback").iloc[0]["round 6"]
    src = rows(built["effects"], testbed="single", control="control_no_feedback", threshold="all", round=6).iloc[0]
    assert cell == f"+1.00 [{src['ci_low']:.2f}, {src['ci_high']:.2f}] p={src['p_value']:.2g}"
    assert main(["tables", *built_runs(built), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "rates.md").read_text()
    assert "| testbed | evolution_round | condition | round 1 |" in md and "design_effect" not in md.split("\n\n")[2]


def built_runs(built) -> list[str]:
    return sorted(built["records"]["run"].unique())


POPULATION = [
    *POPULATION_BASE,
    "--agents",
    "12",
    "--network",
    "ring:k=4",
    "--confederates",
    "3",
    "--placement",
    "clustered",
    "--rounds",
    "5",
]


def test_population_rates_and_effects_name_adoption_and_records_carry_the_graph(runs, tmp_path):
    """A population run's rate is the free agents' adoption (population report's per-round value),
    named `adoption` in rates and effects; its turns carry the agent's neighbours on the saved graph."""
    import networkx as nx

    from tipping.analysis import population

    treated = make(tmp_path / "p-t", POPULATION, "scripted:imitate@0.5", model="m", condition="treatment")
    control = make(tmp_path / "p-c", POPULATION, "scripted:comply", model="m", condition="control")
    built = tables.build([treated, control, runs[3]])  # runs[3]: the multi run, to keep its metric apart
    r = rows(built["rates"], testbed="population", condition="treatment")
    assert set(r["metric"]) == {"adoption"} and set(r["threshold"]) == {"all"}
    expected = population.per_round(population.load_run(treated))["adoption"].tolist()
    assert r["rate"].tolist() == pytest.approx(expected) and len(set(expected)) > 1  # a cascade: rates move
    assert (r["n"] == 9).all()  # 12 agents less 3 confederates
    assert set(rows(built["rates"], testbed="multi")["metric"]) == {"collusion"}
    e = rows(built["effects"], testbed="population")
    assert set(e["metric"]) == {"adoption"} and set(e["control"]) == {"control"}
    assert e.loc[e["threshold"] == "all", "difference"].tolist() == pytest.approx(expected)  # control never colludes
    rec = built["records"]
    ring = nx.watts_strogatz_graph(12, 4, 0)
    pop = rec[rec["testbed"] == "population"]
    assert len(pop) == 2 * 12 * 5
    assert all(list(nb) == sorted(ring.neighbors(a)) for a, nb in zip(pop["agent"], pop["neighbours"]))
    assert rec.loc[rec["testbed"] != "population", "neighbours"].isna().all()
