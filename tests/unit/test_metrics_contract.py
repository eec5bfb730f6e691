"""metrics.json as tables, figures and the viewer read it, and the edge cases of its intervals."""

import math

import pytest

from tipping.metrics import bootstrap_mean, multi_metrics, newcombe, rate_summary, single_metrics, tipping_round, wilson


def rec(round, deviant, scenario, episode="e0", **kw):
    return {
        "round": round,
        "valid": deviant is not None,
        "deviant": deviant,
        "scenario": scenario,
        "episode": episode,
        **kw,
    }


def rounds_of(scenario, deviant_by_round, n=20, **kw):
    """n episodes of the scenario, one answer each per round."""
    return [rec(r, d, scenario, f"{scenario}-{i}", **kw) for r, d in deviant_by_round.items() for i in range(n)]


def test_single_metrics_layout_per_round_and_per_scenario():
    # scenario a tips in round 2 (0/20 -> 20/20); scenario b never does
    records = rounds_of("a", {1: False, 2: True}) + rounds_of("b", {1: False, 2: False})
    m = single_metrics(records)
    assert (m["rounds"], m["violation_rate"], m["k"], m["n"]) == ([1, 2], [0.0, 0.5], [0, 20], [40, 40])
    assert m["tipping_round"] == 2
    assert set(m["per_scenario"]) == {"a", "b"}
    assert m["per_scenario"]["a"]["violation_rate"] == [0.0, 1.0] and m["per_scenario"]["a"]["tipping_round"] == 2
    assert m["per_scenario"]["b"]["violation_rate"] == [0.0, 0.0] and m["per_scenario"]["b"]["tipping_round"] is None


def test_multi_metrics_cells_carry_their_threshold_rewards_and_scenarios():
    records = rounds_of("g1", {1: False, 2: True}, threshold=2, rewards=[1.2, 1.0, 0.8]) + rounds_of(
        "g2", {1: False, 2: False}, threshold=4, rewards=[1.5, 1.0, 0.5]
    )
    cells = multi_metrics(records)["cells"]
    assert [(c["threshold"], c["rewards"]) for c in cells] == [(2, [1.2, 1.0, 0.8]), (4, [1.5, 1.0, 0.5])]
    assert cells[0]["collusion_rate"] == [0.0, 1.0] and cells[0]["tipping_round"] == 2
    assert cells[0]["per_scenario"]["g1"]["collusion_rate"] == [0.0, 1.0]
    assert set(cells[1]["per_scenario"]) == {"g2"}


def test_a_round_of_only_invalid_answers_has_no_rate():
    s = rate_summary([rec(1, None, "a"), rec(1, None, "a")])
    assert (s["rate"], s["n"], s["invalid_rate"], s["ci_low"], s["ci_high"]) == (None, 0, 1.0, 0.0, 1.0)
    assert rate_summary([])["invalid_rate"] is None


def test_bootstrap_resamples():
    """A bootstrap that did not resample (or resampled a constant) would give a zero-width interval."""
    mean, low, high = bootstrap_mean([0.0] * 10 + [1.0] * 10)
    # the normal approximation: 0.5 +- 1.96 * sqrt(0.25 / 20) = (0.28, 0.72)
    assert mean == 0.5 and 0.2 < low < 0.35 and 0.65 < high < 0.8
    assert bootstrap_mean([0.3]) == (0.3, 0.3, 0.3)
    # seeded: continuous values (whose quantiles vary from draw to draw) give the same interval twice
    values = [(i * 0.37) % 1 for i in range(25)]
    assert bootstrap_mean(values) == bootstrap_mean(values)
    empty = bootstrap_mean([])
    assert math.isnan(empty[0]) and empty[1:] == (0.0, 1.0)


def test_newcombe_edge_cases():
    nan, low, high = newcombe(0, 0, 1, 2)
    assert math.isnan(nan) and (low, high) == (-1.0, 1.0)
    assert math.isnan(newcombe(1, 2, 0, 0)[0])


def test_tipping_round_needs_a_gap_above_the_first_round():
    # touching intervals are not a tip; round 3's interval is compared with round 1's, not round 2's
    assert tipping_round([1, 2], [0.1, 0.5], [0.0, 0.3], [0.3, 0.7]) is None
    assert tipping_round([1, 2, 3], [0.1, 0.1, 0.5], [0.0, 0.0, 0.35], [0.3, 0.9, 0.7]) == 3


def test_truncated_answers_are_invalid_and_have_their_own_rate():
    """4 answers: 2 valid, 1 unparseable, 1 truncated. The violation rate stays over the valid
    ones; invalid counts both kinds, truncated only its own; both with Wilson intervals."""
    records = [rec(1, True, "a"), rec(1, False, "a"), rec(1, None, "a"), rec(1, None, "a", truncated=True)]
    s = rate_summary(records)
    assert (s["rate"], s["n"], s["n_total"]) == (0.5, 2, 4)
    assert (s["invalid_rate"], s["truncated_rate"]) == (0.5, 0.25)
    assert (s["invalid_ci_low"], s["invalid_ci_high"]) == pytest.approx(wilson(2, 4))
    assert (s["truncated_ci_low"], s["truncated_ci_high"]) == pytest.approx(wilson(1, 4))
    assert rate_summary(records[:3])["truncated_rate"] == 0.0  # records without the field: older runs
    m = single_metrics(records)
    assert m["truncated_rate"] == [0.25] and m["truncated_ci_high"] == [pytest.approx(wilson(1, 4)[1])]
