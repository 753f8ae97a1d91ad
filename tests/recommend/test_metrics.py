"""Full-ranking metrics on small hand-built cases, with the arithmetic written out."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest

from mapwise.recommend.metrics import (
    average_popularity,
    bootstrap_ci,
    coverage,
    paired_bootstrap_diff,
    ranking_metrics,
    top_k,
)

# 4 users, 6 items (1..6), top-3 lists.
RECS = np.array([[1, 2, 3], [4, 5, 6], [2, 1, 6], [6, 5, 4]])
TARGETS = [np.array([2, 5]), np.array([4]), np.array([6, 1, 3, 4]), np.array([1])]
# hits by rank:  u0 [0 1 0] (2 targets), u1 [1 0 0] (1 target), u2 [0 1 1] (4 targets), u3 [0 0 0] (1 target)
D2, D3 = 1 / log2(3), 1 / log2(4)  # discounts at ranks 2 and 3 (rank 1: 1 / log2(2) = 1)
EXPECTED = {
    # u0: HR@1 0, HR@2..3 1; u1: always 1; u2: HR@1 0, then 1; u3: never.
    "hr@1": [0, 1, 0, 0],
    "hr@2": [1, 1, 1, 0],
    "hr@3": [1, 1, 1, 0],
    # hits in top K / number of targets: u0 1/2 from K=2; u2 1/4 at K=2, 2/4 at K=3.
    "recall@1": [0, 1, 0, 0],
    "recall@2": [1 / 2, 1, 1 / 4, 0],
    "recall@3": [1 / 2, 1, 2 / 4, 0],
    # DCG / IDCG with IDCG over min(#targets, K) ideal hits:
    # u0@2: D2 / (1 + D2); u0@3: same (2 targets, so IDCG stops at rank 2).
    # u2@2: D2 / (1 + D2); u2@3: (D2 + D3) / (1 + D2 + D3).
    "ndcg@1": [0, 1, 0, 0],
    "ndcg@2": [D2 / (1 + D2), 1, D2 / (1 + D2), 0],
    "ndcg@3": [D2 / (1 + D2), 1, (D2 + D3) / (1 + D2 + D3), 0],
    # 1 / rank of the first hit within K: u0 and u2 first hit at rank 2.
    "mrr@1": [0, 1, 0, 0],
    "mrr@2": [1 / 2, 1, 1 / 2, 0],
    "mrr@3": [1 / 2, 1, 1 / 2, 0],
}


def test_ranking_metrics_exact_values():
    got = ranking_metrics(RECS, TARGETS, ks=[1, 2, 3])
    assert set(got) == set(EXPECTED)
    for key, expected in EXPECTED.items():
        assert got[key].dtype == np.float64
        assert got[key] == pytest.approx(expected), key


def test_repeated_targets_count_once():
    repeated = [np.array([2, 5, 5, 2]), *TARGETS[1:]]
    got = ranking_metrics(RECS, repeated, ks=[3])
    assert got["recall@3"][0] == pytest.approx(1 / 2)
    assert got["ndcg@3"][0] == pytest.approx(D2 / (1 + D2))


def test_ranking_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="K"):
        ranking_metrics(RECS, TARGETS, ks=[4])
    with pytest.raises(ValueError, match="no target"):
        ranking_metrics(RECS, [*TARGETS[:3], np.array([], dtype=np.int64)], ks=[1])
    with pytest.raises(ValueError, match="repeat"):
        ranking_metrics(np.array([[1, 1, 2]]), [np.array([1])], ks=[1])


def test_top_k_breaks_ties_by_lower_index():
    scores = np.array([[0.0, 1.0, 3.0, 3.0, 0.0, 3.0, 2.0]])
    assert top_k(scores, 3).tolist() == [[2, 3, 5]]
    assert top_k(scores, 4).tolist() == [[2, 3, 5, 6]]
    assert top_k(np.zeros((2, 7), dtype=np.float32), 6).tolist() == [[1, 2, 3, 4, 5, 6]] * 2


def test_top_k_never_returns_padding_or_excluded_and_keeps_input():
    scores = np.array([[100.0, 5, 4, 3, 2, 1], [100.0, 1, 2, 3, 4, 5]], dtype=np.float32)
    before = scores.copy()
    recs = top_k(scores, 3, exclude=[np.array([1, 3]), np.array([], dtype=np.int64)])
    assert recs.dtype == np.int64
    assert recs.tolist() == [[2, 4, 5], [5, 4, 3]]
    np.testing.assert_array_equal(scores, before)
    assert top_k(scores, 5).tolist() == [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]]


def test_top_k_matches_a_full_sort():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, size=(50, 31)).astype(np.float64)  # many ties
    exclude = [rng.choice(np.arange(1, 31), size=5, replace=False) for _ in range(50)]
    recs = top_k(scores, 10, exclude)
    for u in range(50):
        allowed = sorted(set(range(1, 31)) - set(exclude[u].tolist()))
        assert recs[u].tolist() == sorted(allowed, key=lambda i: (-scores[u, i], i))[:10]


def test_top_k_rejects_impossible_k():
    scores = np.zeros((1, 4))
    with pytest.raises(ValueError, match="k must be"):
        top_k(scores, 4)
    with pytest.raises(ValueError, match="fewer than k"):
        top_k(scores, 2, exclude=[np.array([1, 2])])


def test_coverage_and_average_popularity():
    # distinct recommended items {1, 2, 3, 4, 5, 6} of a 10-item catalogue
    assert coverage(RECS, n_items=10) == pytest.approx(6 / 10)
    popularity = np.array([0, 10, 20, 30, 40, 50, 60])  # item i has popularity 10 i
    # slots: u0 1+2+3, u1 4+5+6, u2 2+1+6, u3 6+5+4 = 45 item units over 12 slots
    assert average_popularity(RECS, popularity) == pytest.approx(10 * 45 / 12)


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = np.random.default_rng(1).random(500)
    mean, low, high = bootstrap_ci(values, n_resamples=500, seed=3)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    assert bootstrap_ci(values, n_resamples=500, seed=3) == (mean, low, high)
    assert bootstrap_ci(values, n_resamples=500, seed=4) != (mean, low, high)


def test_bootstrap_ci_narrows_with_more_users():
    rng = np.random.default_rng(2)
    _, low_few, high_few = bootstrap_ci(rng.random(100), n_resamples=300)
    _, low_many, high_many = bootstrap_ci(rng.random(10_000), n_resamples=300)
    assert high_many - low_many < (high_few - low_few) / 3  # width shrinks like 1 / sqrt(n): 10x here


def test_paired_bootstrap_diff():
    values = np.random.default_rng(5).random(200)
    assert paired_bootstrap_diff(values, values) == (0.0, 0.0, 0.0)
    mean, low, high = paired_bootstrap_diff(values + 0.1, values)
    assert mean == pytest.approx(0.1)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)  # a constant difference has no spread
    # users vary far more than the gap, yet a beats b on every user: the paired interval excludes 0
    noisy = np.random.default_rng(6).random(200)
    _, low, _ = paired_bootstrap_diff(values + noisy * 0.01 + 0.005, values)
    assert low > 0
    with pytest.raises(ValueError, match="differ"):
        paired_bootstrap_diff(values, values[:-1])
