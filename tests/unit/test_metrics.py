"""Rates and intervals against published values, statsmodels/scipy, and hand computations."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from tipping.metrics import (
    bootstrap_mean,
    cluster_interval,
    clustered_mcnemar,
    design_effect,
    multi_metrics,
    newcombe,
    newcombe_paired,
    paired_difference,
    single_metrics,
    tipping_round,
    wilson,
)


def test_wilson_published_values():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 64) == pytest.approx((0.0, 0.05663), abs=1e-4)
    assert wilson(64, 64)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_newcombe_published_example():
    # Newcombe (1998), independent samples, method 10, example (a): 56/70 - 48/80
    d, low, high = newcombe(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_newcombe_paired_published_example():
    # Fagerland, Lydersen & Laake (2017), Statistical Analysis of Contingency Tables, ch. 8:
    # complete response before/after consolidation therapy (Cavo et al. 2012), table [[59, 6], [16, 80]]:
    # Newcombe square-and-add -0.0621 (95% CI -0.1186 to -0.0046)
    assert newcombe_paired(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=1e-4)


def test_pairing_changes_the_interval_and_the_test_not_only_the_margins():
    # both runs deviate on 32 of 64 items: the same items (concordant) or the other 32 (discordant)
    items, half = range(64), [True] * 32 + [False] * 32
    same = paired_difference(items, half, half)
    crossed = paired_difference(items, half, half[::-1])
    assert same["difference"] == crossed["difference"] == 0
    assert same["interval"] == "newcombe_paired" and same["test"] == "mcnemar"
    assert same["ci_high"] - same["ci_low"] < 0.1 < crossed["ci_high"] - crossed["ci_low"]
    _, _low, high = newcombe(32, 64, 32, 64)  # the unpaired interval sits in between
    assert same["ci_high"] < high < crossed["ci_high"]
    assert same["p_value"] == 1.0 and crossed["p_value"] > 0.5  # no evidence of a difference either way
    assert same["n_pairs"] == same["n_clusters"] == 64


@pytest.mark.parametrize("b,c", [(5, 1), (20, 10)])  # exact binomial below 25 discordant pairs, chi-square above
def test_paired_difference_p_value_is_statsmodels_mcnemar(b, c):
    a, d = 10, 30
    treated = [True] * a + [True] * b + [False] * c + [False] * d
    control = [True] * a + [False] * b + [True] * c + [False] * d
    got = paired_difference(range(len(treated)), treated, control)
    assert got["difference"] == pytest.approx((b - c) / len(treated))
    assert got["p_value"] == pytest.approx(mcnemar([[a, b], [c, d]], exact=b + c < 25).pvalue)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(newcombe_paired(a, b, c, d))


def test_clustered_mcnemar_hand_computed_and_reduces_to_mcnemar():
    # Durkalski et al. (2003): (sum(b_k - c_k))^2 / sum((b_k - c_k)^2) = (3 + 0 - 1)^2 / (9 + 0 + 1) = 0.4
    assert clustered_mcnemar([3, 1, 0], [0, 1, 1]) == pytest.approx(stats.chi2.sf(0.4, 1))
    assert clustered_mcnemar([0, 2], [0, 2]) == 1.0  # no discordance left after pairing within clusters
    b, c = [1] * 7 + [0] * 3, [0] * 7 + [1] * 3  # one pair per cluster: McNemar's uncorrected chi-square
    assert clustered_mcnemar(b, c) == pytest.approx(mcnemar([[0, 7], [3, 0]], exact=False, correction=False).pvalue)


def test_paired_difference_with_clusters_bootstraps_episodes():
    # 7 episodes x 8 agents: treatment agents 0-3 collude, control agent 0 only
    episodes = [e for e in range(7) for _ in range(8)]
    treated, control = [a < 4 for _ in range(7) for a in range(8)], [a < 1 for _ in range(7) for a in range(8)]
    got = paired_difference(episodes, treated, control)
    assert got["interval"] == "cluster_bootstrap" and got["test"] == "clustered_mcnemar"
    assert got["difference"] == pytest.approx(3 / 8) and got["n_pairs"] == 56 and got["n_clusters"] == 7
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((3 / 8, 3 / 8))  # every episode differs by 3/8
    assert got["p_value"] == pytest.approx(stats.chi2.sf(21**2 / (7 * 9), 1))  # b_k = 3, c_k = 0
    varied = paired_difference(episodes, [e < 3 for e in episodes], [False] * 56)  # 3 of 7 episodes differ
    assert varied["ci_low"] < 3 / 7 < varied["ci_high"] and varied["ci_high"] - varied["ci_low"] > 0.3
    assert (
        paired_difference(episodes, treated, treated)["ci_low"]
        == 0
        == paired_difference(episodes, treated, treated)["ci_high"]
    )


def test_design_effect_hand_computed():
    assert design_effect([8, 0], [8, 8]) == pytest.approx(8.0)  # every cluster unanimous: deff = m
    assert design_effect([1, 0, 1, 0], [1, 1, 1, 1]) == pytest.approx(1.0)  # one decision per cluster
    # p = 3/12; residuals k - p n = 1, 0, -1; sum of squares 2 over N p (1 - p) = 2.25
    assert design_effect([2, 1, 0], [4, 4, 4]) == pytest.approx(2 / 2.25)
    assert design_effect([0, 0], [4, 4]) is None and design_effect([4, 4], [4, 4]) is None


def test_design_effect_is_the_cluster_bootstrap_variance_ratio():
    rng = np.random.default_rng(1)
    n_c = rng.integers(1, 9, size=60)
    k_c = rng.binomial(n_c, rng.beta(1, 2, size=60))  # cluster-level rates vary: deff well above 1
    res = stats.bootstrap(
        (k_c, n_c),
        lambda k, n, axis: k.sum(axis) / n.sum(axis),
        paired=True,
        vectorized=True,
        n_resamples=4000,
        rng=np.random.default_rng(0),
    )
    p, big_n = k_c.sum() / n_c.sum(), n_c.sum()
    assert design_effect(k_c, n_c) == pytest.approx(res.standard_error**2 / (p * (1 - p) / big_n), rel=0.1)
    assert design_effect(k_c, n_c) > 1.5


def test_cluster_interval():
    assert cluster_interval([1, 0, 1], [1, 1, 1])[:2] == pytest.approx(wilson(2, 3))  # independent: Wilson
    low, high, deff = cluster_interval([8, 0], [8, 8])
    assert deff == pytest.approx(8) and (low, high) == pytest.approx(wilson(1, 2))  # 16 answers worth 2
    assert cluster_interval([2, 1, 0], [4, 4, 4])[:2] == pytest.approx(wilson(3, 12))  # deff < 1 floored at 1
    assert cluster_interval([0, 0, 0], [8, 8, 8]) == (0.0, pytest.approx(wilson(0, 3)[1]), None)  # worst case
    assert cluster_interval([], []) == (0.0, 1.0, None)


def test_bootstrap_is_seeded_and_resamples_clusters():
    values = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2]
    mean, low, high = bootstrap_mean(values)
    assert (mean, low, high) == bootstrap_mean(values)
    assert mean == pytest.approx(0.45) and 0.1 < low < mean < high < 0.9
    assert bootstrap_mean([0.2] * 10) == pytest.approx((0.2, 0.2, 0.2))
    # two clusters of identical values: the mean of a resample is 0 or 1 or 0.5 -> wider than 20 independent values
    clustered = bootstrap_mean([0.0] * 10 + [1.0] * 10, [0] * 10 + [1] * 10)
    independent = bootstrap_mean([0.0] * 10 + [1.0] * 10)
    assert clustered[1] < independent[1] and clustered[2] > independent[2]
    assert bootstrap_mean([0.3, 0.3], ["e", "e"]) == pytest.approx((0.3, 0.3, 0.3))  # one cluster


def rec(round, deviant, scenario="a", episode="e0", **kw):
    return {
        "round": round,
        "valid": deviant is not None,
        "deviant": deviant,
        "scenario": scenario,
        "episode": episode,
        **kw,
    }


def test_single_rate_excludes_invalid_from_denominator_and_reports_it():
    records = [
        rec(1, True, episode="a"),
        rec(1, False, episode="b"),
        rec(1, False, episode="c"),
        rec(1, None, episode="d"),
    ]
    m = single_metrics(records)
    assert m["violation_rate"] == [pytest.approx(1 / 3)]
    assert m["invalid_rate"] == [0.25]
    assert m["n"] == [3] and m["n_total"] == [4] and m["n_clusters"] == [3]
    assert (m["ci_low"][0], m["ci_high"][0]) == pytest.approx(wilson(1, 3))
    assert (m["cluster_ci_low"][0], m["cluster_ci_high"][0]) == pytest.approx(wilson(1, 3))
    assert m["design_effect"] == [pytest.approx(1.0)]


def test_multi_denominator_is_episodes_times_agents():
    # 7 games x 8 agents, one colluder per game: 7/56 = 0.125 (upstream's code reports 7/8)
    records = [
        rec(1, agent == 0, scenario=f"g{g}", episode=f"g{g}", threshold=2, rewards=[1.2, 1.0, 0.8], agent=agent)
        for g in range(7)
        for agent in range(8)
    ]
    (cell,) = multi_metrics(records)["cells"]
    assert cell["collusion_rate"] == [0.125] and cell["n"] == [56] and cell["n_clusters"] == [7]


def test_correlated_agents_widen_the_interval_and_delay_the_tip():
    # 7 episodes x 8 agents that always agree: round 1 none, round 2 two episodes, round 3 six collude
    colluding = {1: 0, 2: 2, 3: 6}
    records = [
        rec(r, g < colluding[r], episode=f"g{g}", threshold=2, rewards=[1, 1, 1], agent=a)
        for r in (1, 2, 3)
        for g in range(7)
        for a in range(8)
    ]
    (cell,) = multi_metrics(records)["cells"]
    assert cell["design_effect"] == [None, pytest.approx(8.0), pytest.approx(8.0)]
    assert (cell["cluster_ci_low"][1], cell["cluster_ci_high"][1]) == pytest.approx(wilson(2, 7))  # 56 worth 7
    assert tipping_round(cell["rounds"], cell["collusion_rate"], cell["ci_low"], cell["ci_high"]) == 2  # Wilson
    assert cell["tipping_round"] == 3


def test_confederates_are_not_counted():
    records = [
        rec(1, True, threshold=1, rewards=[1, 1, 1], confederate=True),
        rec(1, False, threshold=1, rewards=[1, 1, 1], confederate=False),
    ]
    assert multi_metrics(records)["cells"][0]["collusion_rate"] == [0.0]


def test_mean_probability_reported_in_choice_mode():
    records = [rec(1, False, p_deviant=0.2, episode="a"), rec(1, True, p_deviant=0.6, episode="b")]
    m = single_metrics(records)
    assert m["mean_p_deviant"] == [pytest.approx(0.4)]
    assert m["p_ci_low"][0] <= 0.4 <= m["p_ci_high"][0]


def test_tipping_round():
    # round 1: 0/64, interval (0, 0.057); round 3's 20/64 interval starts at 0.21 > 0.057
    lows, highs = zip(*(wilson(k, 64) for k in (0, 2, 20)))
    assert tipping_round([1, 2, 3], [0, 2 / 64, 20 / 64], list(lows), list(highs)) == 3
    assert tipping_round([1, 2], [0.5, 0.5], [0.4, 0.4], [0.6, 0.6]) is None
    assert tipping_round([], [], [], []) is None
