"""paired_difference: pairing, the one-pair-per-cluster branch (Newcombe 1998 paired + McNemar)
against the clustered one (cluster bootstrap + Durkalski's clustered McNemar), empty input and
the returned fields. Expected values are scipy/statsmodels or worked by hand in the comments."""

import numpy as np
import pytest
from scipy import stats

from tipping.metrics import paired_difference

FIELDS = {
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
}


def _table(a, b, c, d):
    """Pairs of a 2x2 table: a both deviant, b only treatment, c only control, d neither."""
    return [True] * (a + b) + [False] * (c + d), [True] * a + [False] * b + [True] * c + [False] * d


def test_no_pairs_is_no_estimate_and_the_widest_interval():
    assert paired_difference([], [], []) == {
        "treatment_rate": None,
        "control_rate": None,
        "difference": None,
        "ci_low": -1.0,
        "ci_high": 1.0,
        "interval": None,
        "p_value": None,
        "test": None,
        "n_pairs": 0,
        "n_clusters": 0,
    }


def test_one_pair_is_an_estimate_not_the_empty_result():
    got = paired_difference(["e0"], [True], [False])
    assert set(got) == FIELDS
    assert (got["treatment_rate"], got["control_rate"], got["difference"]) == (1.0, 0.0, 1.0)
    assert (got["n_pairs"], got["n_clusters"], got["interval"], got["test"]) == (1, 1, "newcombe_paired", "mcnemar")
    assert got["p_value"] == 1.0  # one discordant pair: exact binomial, 2 * P(X <= 0 | 1, 1/2) capped at 1


def test_rates_are_the_two_margins_of_the_paired_table():
    treated, control = _table(3, 5, 2, 10)  # 20 pairs
    got = paired_difference(range(20), treated, control)
    assert set(got) == FIELDS
    assert got["treatment_rate"] == pytest.approx(8 / 20) and got["control_rate"] == pytest.approx(5 / 20)
    assert got["difference"] == pytest.approx(3 / 20)
    assert got["ci_low"] < 3 / 20 < got["ci_high"]


def test_numeric_decision_flags_are_read_as_booleans():
    # flags as 0.0 / 1.0 (a numeric column) give the result of the booleans, in both branches
    treated, control = _table(3, 5, 2, 10)
    as_float = lambda xs: np.asarray(xs, dtype=float)  # noqa: E731
    for clusters in (range(20), [i // 4 for i in range(20)]):
        assert paired_difference(clusters, as_float(treated), as_float(control)) == paired_difference(
            clusters, treated, control
        )


@pytest.mark.parametrize(
    "b, c, p_value",
    [
        # 24 discordant pairs: exact binomial test, two-sided
        (15, 9, stats.binomtest(9, 24, 0.5).pvalue),
        # 25: chi-square with continuity correction, (|15 - 10| - 1)^2 / 25 = 0.64
        (15, 10, stats.chi2.sf(0.64, 1)),
    ],
)
def test_mcnemar_is_exact_below_25_discordant_pairs(b, c, p_value):
    treated, control = _table(4, b, c, 6)
    got = paired_difference(range(len(treated)), treated, control)
    assert got["test"] == "mcnemar" and got["p_value"] == pytest.approx(p_value)


def test_clustered_mcnemar_counts_only_the_discordant_pairs_of_each_cluster():
    # (treated, control) per pair; concordant pairs in every episode must not count
    episodes = {
        "e0": [(1, 0), (1, 0), (1, 1), (0, 0)],  # b = 2, c = 0
        "e1": [(0, 1), (1, 1), (1, 0), (0, 0)],  # b = 1, c = 1
        "e2": [(0, 1), (0, 0), (1, 1), (0, 0)],
    }  # b = 0, c = 1
    clusters = [e for e, pairs in episodes.items() for _ in pairs]
    treated = [bool(t) for pairs in episodes.values() for t, _ in pairs]
    control = [bool(c) for pairs in episodes.values() for _, c in pairs]
    got = paired_difference(clusters, treated, control)
    assert (got["interval"], got["test"], got["n_pairs"], got["n_clusters"]) == (
        "cluster_bootstrap",
        "clustered_mcnemar",
        12,
        3,
    )
    # b_k - c_k = 2, 0, -1: statistic (2 + 0 - 1)^2 / (4 + 0 + 1) = 0.2
    assert got["p_value"] == pytest.approx(stats.chi2.sf(0.2, 1))
    assert got["difference"] == pytest.approx((3 - 2) / 12)
    assert got["treatment_rate"] == pytest.approx(6 / 12) and got["control_rate"] == pytest.approx(5 / 12)
    # the mirror image: the control's extra deviant answers sit in one episode
    mirrored = paired_difference(clusters, control, treated)
    assert mirrored["p_value"] == pytest.approx(got["p_value"]) and mirrored["difference"] == -got["difference"]
