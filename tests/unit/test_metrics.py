"""Rates and intervals against hand-computed and published values."""

import pytest

from tipping.metrics import bootstrap_mean, multi_metrics, newcombe, single_metrics, tipping_round, wilson


def test_wilson_published_values():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 64) == pytest.approx((0.0, 0.05663), abs=1e-4)
    assert wilson(64, 64)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_newcombe_published_example():
    # Newcombe (1998), method 10, example (a): 56/70 - 48/80
    d, low, high = newcombe(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_bootstrap_is_seeded():
    assert bootstrap_mean([0.1, 0.5, 0.9]) == bootstrap_mean([0.1, 0.5, 0.9])
    mean, low, high = bootstrap_mean([0.2] * 10)
    assert mean == low == high == pytest.approx(0.2)


def rec(round, deviant, scenario="a", **kw):
    return {"round": round, "valid": deviant is not None, "deviant": deviant, "scenario": scenario, **kw}


def test_single_rate_excludes_invalid_from_denominator_and_reports_it():
    records = [rec(1, True), rec(1, False), rec(1, False), rec(1, None)]
    m = single_metrics(records)
    assert m["violation_rate"] == [pytest.approx(1 / 3)]
    assert m["invalid_rate"] == [0.25]
    assert m["n"] == [3] and m["n_total"] == [4]
    assert (m["ci_low"][0], m["ci_high"][0]) == pytest.approx(wilson(1, 3))


def test_multi_denominator_is_episodes_times_agents():
    # 7 games x 8 agents, one colluder per game: 7/56 = 0.125 (upstream's code reports 7/8)
    records = [rec(1, agent == 0, scenario=f"g{g}", threshold=2, rewards=[1.2, 1.0, 0.8], agent=agent)
               for g in range(7) for agent in range(8)]
    cell, = multi_metrics(records)["cells"]
    assert cell["collusion_rate"] == [0.125] and cell["n"] == [56]


def test_confederates_are_not_counted():
    records = [rec(1, True, threshold=1, rewards=[1, 1, 1], confederate=True),
               rec(1, False, threshold=1, rewards=[1, 1, 1], confederate=False)]
    assert multi_metrics(records)["cells"][0]["collusion_rate"] == [0.0]


def test_mean_probability_reported_in_choice_mode():
    records = [rec(1, False, p_deviant=0.2), rec(1, True, p_deviant=0.6)]
    m = single_metrics(records)
    assert m["mean_p_deviant"] == [pytest.approx(0.4)]
    assert m["p_ci_low"][0] <= 0.4 <= m["p_ci_high"][0]


def test_tipping_round():
    # round 1: 0/64, interval (0, 0.057); round 3's 20/64 interval starts at 0.21 > 0.057
    lows, highs = zip(*(wilson(k, 64) for k in (0, 2, 20)))
    assert tipping_round([1, 2, 3], [0, 2 / 64, 20 / 64], list(lows), list(highs)) == 3
    assert tipping_round([1, 2], [0.5, 0.5], [0.4, 0.4], [0.6, 0.6]) is None
    assert tipping_round([], [], [], []) is None
