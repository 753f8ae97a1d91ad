"""Baselines on small hand-built training frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from mapwise.recommend.baselines import EASE, BASELINES, ItemKNN, PersonalPopularity, Popularity, RecencyFrequency, build_baseline
from mapwise.recommend.metrics import top_k

N_ITEMS = 5
START = datetime(2024, 1, 1, tzinfo=UTC)


def frame(rows: list[tuple[str, int, int]]) -> pl.DataFrame:
    """Training purchases from (customer, item_idx, day offset)."""
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "item_idx": [r[1] for r in rows],
            "timestamp": [START + timedelta(days=r[2]) for r in rows],
        },
        schema={"customer_id": pl.String, "item_idx": pl.Int32, "timestamp": pl.Datetime("us", "UTC")},
    )


# Item 1 was the hit of early January (4 purchases); items 3 and 2 sold in the last week (day 60).
TRAIN = frame(
    [("a", 1, 0), ("b", 1, 1), ("c", 1, 2), ("d", 1, 3)]
    + [("a", 3, 58), ("b", 3, 59), ("c", 2, 60), ("a", 2, 55)]
    + [("e", 4, 10), ("e", 5, 10), ("f", 4, 11), ("f", 5, 12), ("g", 4, 20)]
)
HISTORIES = [np.array([4]), np.array([], dtype=np.int64), np.array([2, 5, 5, 5])]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_score_shape_and_padding(name):
    model = build_baseline(name, popularity_window_days=7, knn_neighbours=2).fit(TRAIN, N_ITEMS)
    scores = model.score(HISTORIES)
    assert scores.shape == (3, N_ITEMS + 1)
    assert scores.dtype == np.float32
    assert np.isneginf(scores[:, 0]).all()
    assert np.isfinite(scores[:, 1:]).all()


def test_popularity_ranks_recent_items_first():
    # days 53..60: items 2 (days 55, 60) and 3 (days 58, 59) twice each, and twice each all-time too, so the
    # lower index leads; the rest follow by all-time count: item 1 x4, item 4 x3, item 5 x2.
    scores = Popularity(window_days=7).fit(TRAIN, N_ITEMS).score(HISTORIES)
    assert top_k(scores, 5).tolist() == [[2, 3, 1, 4, 5]] * 3
    # days 57..60: item 3 twice, item 2 once; then item 1 by all-time count
    scores = Popularity(window_days=3).fit(TRAIN, N_ITEMS).score(HISTORIES)
    assert top_k(scores, 3)[0].tolist() == [3, 2, 1]


def test_popularity_all_time_breaks_recent_ties():
    train = frame([("a", 1, 0), ("b", 1, 0), ("c", 2, 0), ("a", 1, 30), ("a", 2, 30), ("b", 3, 30)])
    # recent: items 1, 2, 3 once each; all-time: 1 x3, 2 x2, 3 x1
    scores = Popularity(window_days=5).fit(train, 3).score([np.array([], dtype=np.int64)])
    assert top_k(scores, 3).tolist() == [[1, 2, 3]]


def test_personal_popularity_own_repeats_first_then_global():
    scores = PersonalPopularity().fit(TRAIN, N_ITEMS).score(HISTORIES)
    recs = top_k(scores, 3)
    assert recs[2, 0] == 5  # bought three times
    assert recs[2, 1] == 2  # bought once, ahead of never-bought items
    # empty history: global all-time popularity, item 1 (x4) then item 4 (x3)
    assert recs[1].tolist() == [1, 4, 2]
    assert scores[1, 1:].max() < 0.5  # the tie-breaker alone never reaches one purchase


def test_item_knn_recommends_the_co_bought_item():
    model = ItemKNN(neighbours=2).fit(TRAIN, N_ITEMS)
    recs = top_k(model.score(HISTORIES), 2, exclude=HISTORIES)
    # item 4's buyers {e, f, g} share e, f with item 5's buyers {e, f}: cosine 2 / sqrt(3 * 2)
    assert recs[0, 0] == 5
    # no history: only the popularity tie-breaker, item 1 first
    assert recs[1, 0] == 1
    # history {2, 5}: item 5 -> 4 (2 / sqrt(6) ~ 0.82); item 2 -> 1 (2 / sqrt(8) ~ 0.71) and 3 (1 / 2)
    assert recs[2, 0] == 4


def test_item_knn_keeps_only_the_nearest_neighbours():
    model = ItemKNN(neighbours=1).fit(TRAIN, N_ITEMS)
    # item 2's buyers {a, c}: item 1 {a, b, c, d} cosine 2 / sqrt(8) ~ 0.71 beats item 3 {a, b} 1 / 2
    row = model.similarity_[2].toarray().ravel()
    assert np.flatnonzero(row).tolist() == [1]
    assert row[1] == pytest.approx(2 / np.sqrt(8))


def test_build_baseline_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("random", popularity_window_days=7, knn_neighbours=2)


def test_recency_frequency_weighs_recent_purchases_more_and_ranks_bought_items_first():
    model = RecencyFrequency(half_life=1).fit(TRAIN, N_ITEMS)
    scores = model.score([np.array([2, 5, 5, 5]), np.array([3, 3, 1])])
    # item 5: 1 + (0.25 + 0.5 + 1); item 2: 1 + 0.125; never bought: global popularity's dense rank / 4 * 0.5
    np.testing.assert_allclose(scores[0, 1:], [0.375, 1.125, 0.125, 0.25, 2.75])
    assert scores[1, 1] == 2.0 and scores[1, 3] == 1.75, "bought once lately beats bought twice long ago"
    assert top_k(scores, 5)[0].tolist() == [5, 2, 1, 4, 3]


def test_ease_weights_match_the_closed_form_on_a_hand_built_case():
    # a and b bought items 1 and 2, c bought item 3: with lambda = 1, G = [[3, 2, 0], [2, 3, 0], [0, 0, 2]],
    # P = G^-1 has P12 = -2/5, P22 = 3/5, so B12 = -P12 / P22 = 2/3; item 3 is unrelated: B13 = 0
    train = frame([("a", 1, 0), ("a", 2, 0), ("b", 1, 1), ("b", 2, 1), ("c", 3, 2)])
    model = EASE(l2=1, max_items=10).fit(train, 3)
    np.testing.assert_allclose(model.weights_[1:, 1:], [[0, 2 / 3, 0], [2 / 3, 0, 0], [0, 0, 0]], atol=1e-6)
    scores = model.score([np.array([1])])
    assert abs(scores[0, 2] - 2 / 3) < 1e-5 and top_k(scores, 1)[0].tolist() == [2]
    with pytest.raises(ValueError, match="over evaluate.ease_max_items"):
        EASE(l2=1, max_items=2).fit(train, 3)
