"""Figure functions on small hand-made tables: axes, data, labels, empty-data panels, byte-stable files."""

import pandas as pd
import pytest

from tipping import paths
from tipping.analysis import plots
from tipping.cli import main


def series(
    rates,
    testbed="single",
    model="m",
    defence="none",
    condition="treatment",
    evolution_round=0,
    threshold="all",
    rewards="all",
    **extra,
):
    return [
        {
            "testbed": testbed,
            "model": model,
            "defence": defence,
            "condition": condition,
            "evolution_round": evolution_round,
            "threshold": threshold,
            "rewards": rewards,
            "round": i + 1,
            "rate": r,
            "ci_low": max(0.0, r - 0.1),
            "ci_high": min(1.0, r + 0.1),
            "cluster_ci_low": max(0.0, r - 0.2),
            "cluster_ci_high": min(1.0, r + 0.2),
            "invalid_rate": r / 10,
            "truncated_rate": 0.0,
            **extra,
        }
        for i, r in enumerate(rates)
    ]


def frame(*parts):
    return pd.DataFrame([row for part in parts for row in part])


def lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def no_data_text(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_cli_lists_every_figure():
    assert tuple(plots.DRAW) == paths.FIGURES


def test_single_rounds_lines_per_model_and_defence_controls_dashed():
    df = frame(
        series([0, 0.5, 1]),
        series([0, 0.2, 0.4], defence="dpo"),
        series([0, 0, 0], condition="control_no_feedback"),
        series([1, 1, 1], evolution_round=1),
        series([0.1] * 3, testbed="multi", threshold="2"),
    )
    fig = plots.single_rounds(df)
    (ax,) = fig.axes
    got = lines(ax)
    assert sorted(got) == ["m · dpo", "m · none", "m · none (control_no_feedback)"]  # evolution round 1 left out
    assert list(got["m · none"].get_ydata()) == [0, 0.5, 1]
    assert got["m · none (control_no_feedback)"].get_linestyle() == "--"
    assert got["m · none"].get_color() == got["m · none (control_no_feedback)"].get_color()
    assert ax.get_xlabel() == "in-context round" and "violation rate" in ax.get_ylabel()
    assert ax.get_title() == "Single agent, evolution round 0"
    assert len(ax.collections) == 3  # one CI band per line


def band_y(collection) -> list:
    return sorted({round(float(y), 6) for y in collection.get_paths()[0].vertices[:, 1]})


def test_rate_bands_and_error_bars_are_the_cluster_intervals():
    (ax,) = plots.single_rounds(frame(series([0.5, 0.5]))).axes
    assert band_y(ax.collections[0]) == [0.3, 0.7]  # cluster interval (rate ± 0.2 here), not Wilson's ± 0.1
    df = frame(series([0.5, 0.5], ratio_low=0.0, ratio_high=1.05))
    bars = plots.payoff_ratio(df).axes[0].containers[0].lines[2][0]  # the vertical error bar lines
    ((low, high),) = [segment[:, 1].tolist() for segment in bars.get_segments()]
    assert (low, high) == pytest.approx((0.3, 0.7))
    effect = frame([{**r, "difference": r["rate"], "control": "c"} for r in series([0.5, 0.5])])
    assert band_y(plots.tipping_effect(effect.drop(columns="condition")).axes[0].collections[0]) == [0.4, 0.6]


def test_a_varying_decision_or_extra_tag_splits_lines():
    df = frame(
        series([0, 1], decision="generate"),
        series([0, 0.5], decision="choice"),
        series([0.2, 0.2], decision="choice", seed_group="b"),
    )
    assert sorted(lines(plots.single_rounds(df).axes[0])) == [
        "m · none · choice · b",
        "m · none · choice · nan",
        "m · none · generate · nan",
    ]


def test_tipping_effect_one_panel_per_testbed():
    rows = [
        {**r, "difference": r["rate"], "control": "control_no_feedback"}
        for r in series([0, 0.5]) + series([0.1, 0.2], testbed="multi")
    ]
    fig = plots.tipping_effect(pd.DataFrame(rows).drop(columns="condition"))
    assert [ax.get_title() for ax in fig.axes] == ["single: tipping effect", "multi: tipping effect"]
    single = lines(fig.axes[0])["m · none − control_no_feedback"]
    assert list(single.get_ydata()) == [0, 0.5]
    assert "treatment − control" in fig.axes[0].get_ylabel()


def test_multi_rounds_facets_by_reward_set_hue_by_threshold():
    df = frame(
        *(
            series([0.1 * t, 0.2 * t, 0.3 * t], testbed="multi", threshold=str(t), rewards=rw)
            for t in (2, 4)
            for rw in ("1.2/1.0/0.8", "1.4/1.0/0.8")
        ),
        series([0.5] * 3, testbed="multi"),
    )  # the pooled cell is not a threshold line
    fig = plots.multi_rounds(df)
    assert [ax.get_title() for ax in fig.axes] == ["m · none | rewards 1.2/1.0/0.8", "m · none | rewards 1.4/1.0/0.8"]
    got = lines(fig.axes[0])
    assert sorted(got) == ["threshold 2", "threshold 4"]
    assert list(got["threshold 4"].get_ydata()) == pytest.approx([0.4, 0.8, 1.2])


def test_multi_heatmap_threshold_by_round():
    df = frame(*(series([0.1, 0.2, 0.3], testbed="multi", threshold=str(t), rewards="1.2/1.0/0.8") for t in (2, 4, 6)))
    fig = plots.multi_heatmap(df)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "threshold" and ax.get_xlabel() == "round"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "4", "6"]
    assert ax.collections[0].get_array().ravel().tolist() == pytest.approx([0.1, 0.2, 0.3] * 3)
    assert [t.get_text() for t in ax.texts][:3] == ["0.10", "0.20", "0.30"]


def test_evolution_curve_first_dotted_last_solid():
    rows = []
    for when, rates in (("first", [0.0, 0.2, 0.6]), ("last", [0.5, 0.8, 1.0])):
        for evo, r in enumerate(rates):
            rows += [{**series([r], evolution_round=evo)[0], "in_context": when}]
    fig = plots.evolution(pd.DataFrame(rows))
    (ax,) = fig.axes
    got = lines(ax)
    assert list(got["m · none (first round)"].get_ydata()) == [0.0, 0.2, 0.6]
    assert got["m · none (first round)"].get_linestyle() == ":" and got["m · none (last round)"].get_linestyle() == "-"
    assert ax.get_xlabel() == "evolution round"
    only_zero = pd.DataFrame(rows)
    assert "no data for evolution" in no_data_text(plots.evolution(only_zero[only_zero["evolution_round"] == 0]))[0]


def test_per_scenario_puts_the_first_to_tip_on_top():
    df = frame(
        series([0, 0, 1], scenario="late", tipping_round=3),
        series([0, 1, 1], scenario="early", tipping_round=2),
        series([0, 0, 0], scenario="never", tipping_round=None),
    )
    fig = plots.per_scenario(df)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["early (tips r2)", "late (tips r3)", "never"]


def test_payoff_ratio_bins_on_the_x_axis():
    df = frame(
        series([0.5, 0.7], ratio_low=0.0, ratio_high=1.05), series([0.6, 0.9], ratio_low=3.0, ratio_high=float("inf"))
    )
    fig = plots.payoff_ratio(df)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["<1.05", "≥3"]
    assert ax.get_title() == "Single agent, in-context round 2"
    assert ax.containers[0].lines[0].get_ydata().tolist() == [0.7, 0.9]  # the last round only


def test_invalid_rate_per_testbed():
    fig = plots.invalid_rate(frame(series([0.1, 0.5]), series([0.2, 0.3], testbed="multi")))
    assert len(fig.axes) == 2
    assert list(lines(fig.axes[0])["m · none"].get_ydata()) == pytest.approx([0.01, 0.05])
    assert len(fig.axes[0].get_lines()) == 1  # no truncated answers: no dashed line


def test_invalid_rate_draws_the_truncated_share_dashed():
    fig = plots.invalid_rate(frame(series([0.1, 0.5], truncated_rate=0.004)))
    _solid, dashed = fig.axes[0].get_lines()
    assert dashed.get_linestyle() == "--" and list(dashed.get_ydata()) == pytest.approx([0.004, 0.004])


@pytest.mark.parametrize("name", list(plots.DRAW))
def test_absent_data_draws_a_no_data_panel(name):
    columns = [
        "testbed",
        "model",
        "defence",
        "condition",
        "evolution_round",
        "threshold",
        "rewards",
        "round",
        "rate",
        "ci_low",
        "ci_high",
        "cluster_ci_low",
        "cluster_ci_high",
        "invalid_rate",
        "truncated_rate",
        "difference",
        "control",
        "in_context",
        "scenario",
        "tipping_round",
        "ratio_low",
        "ratio_high",
    ]
    fig = plots.DRAW[name][0](pd.DataFrame(columns=columns))
    assert no_data_text(fig)[0].startswith(f"no data for {name}")


def test_saved_files_are_byte_identical_and_carry_no_timestamps(tmp_path):
    df = frame(series([0, 0.5, 1]))
    plots.save(plots.single_rounds(df), tmp_path / "a.png")
    plots.save(plots.single_rounds(df), tmp_path / "b.png")
    for ext in ("png", "pdf"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()
    assert b"Software" not in (tmp_path / "a.png").read_bytes()
    assert b"CreationDate" not in (tmp_path / "a.pdf").read_bytes()


def test_plot_command_draws_every_figure_from_a_tables_folder(scripted_runs, tmp_path):
    """The shared scripted set (tests/scripted_runs.py: single treatment and control, two evolution
    rounds, multi) has data for every figure: none is a no-data panel."""
    tables = scripted_runs["tables"]
    for name, (function, table) in plots.DRAW.items():
        assert not [t for t in no_data_text(function(plots.read_table(tables, table))) if t.startswith("no data")]
        assert main(["plot", name, "--tables", str(tables), "--out", str(tmp_path / f"f/{name}.png")]) == 0
        assert (tmp_path / f"f/{name}.png").stat().st_size > 1000 and (tmp_path / f"f/{name}.pdf").is_file()


def test_plot_without_its_table_is_one_line_naming_the_file(tmp_path, capsys):
    assert main(["plot", "evolution", "--tables", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nothing' / 'evolution.csv'}: not found; run `tipping tables" in err
    assert err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "x.png").exists()


def test_every_control_condition_has_its_own_line_style():
    from tipping.config import CONDITIONS

    controls = [c for c in CONDITIONS if c != "treatment"]
    df = frame(series([0.2, 0.4, 0.6]), *(series([0.1 * i] * 3, condition=c) for i, c in enumerate(controls)))
    got = lines(plots.single_rounds(df).axes[0])
    styles = [got[f"m · none ({c})"].get_linestyle() for c in controls]
    assert got["m · none"].get_linestyle() == "-" and len(set(styles)) == len(controls) and "-" not in styles
