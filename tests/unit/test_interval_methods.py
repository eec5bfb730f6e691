"""Interval methods against scipy/statsmodels and hand computations: Wilson at small n, the
cluster bootstrap's documented settings, Newcombe's paired interval in each branch of its phi."""

import numpy as np
import pytest
from scipy import stats

from tipping.metrics import bootstrap_mean, newcombe, newcombe_paired, wilson


def test_wilson_of_one_answer():
    # z = 1.96: (1 + z^2/2 -+ z sqrt(z^2/4)) / (1 + z^2) for k = 1, n = 1
    z = stats.norm.ppf(0.975)
    assert wilson(1, 1) == pytest.approx((1 / (1 + z * z), 1.0))
    assert wilson(0, 1) == pytest.approx((0.0, z * z / (1 + z * z)))


def test_cluster_bootstrap_is_scipys_paired_percentile_bootstrap_with_the_documented_settings():
    # METHODS: percentile, 2000 resamples, seed 0, clusters resampled whole (sums and sizes paired)
    values = [1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1]
    clusters = ["a", "a", "a", "b", "b", "c", "c", "c", "c", "d", "e", "e", "f", "f", "f", "g", "g", "h"]
    ids = sorted(set(clusters))
    sums = np.array([sum(v for v, c in zip(values, clusters) if c == i) for i in ids], dtype=float)
    sizes = np.array([clusters.count(i) for i in ids])
    ref = stats.bootstrap(
        (sums, sizes),
        lambda s, n, axis: s.sum(axis) / n.sum(axis),
        paired=True,
        vectorized=True,
        n_resamples=2000,
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(0),
    )
    mean, low, high = bootstrap_mean(values, clusters)
    assert mean == pytest.approx(8 / 18)
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))


def test_clusters_with_the_same_mean_give_a_point_interval():
    # every cluster's own mean is 1/2: a resample of whole clusters always has mean 1/2, whatever
    # the cluster sizes (resampling sums and sizes apart would not keep them together)
    values = [1, 0] + [1, 1, 0, 0] + [1, 0, 1, 0, 1, 0] + [0, 1]
    clusters = [0] * 2 + [1] * 4 + [2] * 6 + [3] * 2
    assert bootstrap_mean(values, clusters) == pytest.approx((0.5, 0.5, 0.5))


def _wilson(k, n, z=stats.norm.ppf(0.975)):
    """Wilson's score interval, the closed form."""
    p = k / n
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)),
    )
    return centre - half, centre + half


def _newcombe_10(a, b, c, d):
    """Newcombe (1998) method 10 as the paper writes it: phi = A / sqrt(margins) with A = ad - bc - n/2
    when ad - bc > n/2, 0 when 0 <= ad - bc <= n/2, ad - bc when negative; phi = 0 when a margin is 0."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = _wilson(a + b, n), _wilson(a + c, n)
    excess = a * d - b * c
    big_a = excess - n / 2 if excess > n / 2 else (0 if excess >= 0 else excess)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = big_a / np.sqrt(margins) if margins else 0.0
    low = p1 - p2 - np.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = p1 - p2 + np.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return low, high


def test_the_reference_reproduces_the_published_example():
    # Fagerland, Lydersen & Laake (2017), ch. 8, table [[59, 6], [16, 80]]: -0.1186 to -0.0046
    assert _newcombe_10(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=1e-4)


@pytest.mark.parametrize(
    "table",
    [
        (2, 8, 5, 5),  # ad - bc = -30 < 0: A = ad - bc
        (5, 5, 5, 6),  # ad - bc = 5 in [0, n/2 = 10.5]: A = 0
        (5, 5, 4, 6),  # ad - bc = 10 = n/2: A = 0 (the boundary)
        (4, 5, 4, 7),  # ad - bc = 8, between n/3 and n/2 = 10: A = 0
        (6, 4, 4, 6),  # ad - bc = 20 > n/2 = 10: A = 10
        (30, 5, 0, 0),  # c + d = 0: a zero margin, phi = 0
        (0, 0, 12, 3),  # a + b = 0
    ],
)
def test_newcombe_paired_in_every_branch_of_phi(table):
    assert newcombe_paired(*table) == pytest.approx(_newcombe_10(*table), abs=1e-9)


def test_differences_stay_within_minus_one_and_one():
    # all answers on one side: the square-and-add limit is 1 up to rounding (1 + 2e-16 at n = 7 and 9)
    for n in (7, 9):
        assert newcombe_paired(0, n, 0, 0)[1] == 1.0 and newcombe_paired(0, 0, n, 0)[0] == -1.0
        assert newcombe(n, n, 0, 7)[2] == 1.0 and newcombe(0, n, 7, 7)[1] == -1.0
