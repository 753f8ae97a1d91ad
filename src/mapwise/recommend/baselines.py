"""Non-learned recommendation baselines sharing one interface: `fit(train, n_items)`, then `score(histories)`.

`train` has one row per training purchase: `customer_id`, `item_idx` (1..n_items; 0 is padding), `timestamp`.
`score` returns float32 `[len(histories), n_items + 1]` with column 0 = -inf, ready for `metrics.top_k`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Protocol, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from mapwise import columns as c
from mapwise.params import EvaluateParams
from mapwise.columns import ITEM_IDX

_KNN_BLOCK = 4096  # item rows of the similarity matrix computed at a time


class Baseline(Protocol):
    """What every baseline offers."""

    def fit(self, train: pl.DataFrame, n_items: int) -> Self: ...

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray: ...


def _item_counts(items: pl.Series | np.ndarray, n_items: int) -> np.ndarray:
    """Purchases per item index, length n_items + 1; an error for an index outside 1..n_items."""
    idx = np.asarray(items, dtype=np.int64)
    if idx.size == 0:
        raise ValueError("train holds no purchases")
    if idx.min() < 1 or idx.max() > n_items:
        raise ValueError(f"{ITEM_IDX} must lie in 1..{n_items}, got {idx.min()}..{idx.max()}")
    return np.bincount(idx, minlength=n_items + 1)


def _dense_rank(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """0-based dense rank of each key (equal keys share a rank) and the number of distinct ranks."""
    distinct, rank = np.unique(keys, return_inverse=True)
    return rank, distinct.size


def _tie_breaker(counts: np.ndarray, scale: float) -> np.ndarray:
    """Counts mapped monotonically into [0, scale) through their dense rank (finer than counts / max in float32)."""
    rank, n = _dense_rank(counts)
    return (scale * rank / n).astype(np.float32)


def _history_matrix(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Purchase counts per user and item index, `[len(histories), n_items + 1]`."""
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    cols = np.concatenate([np.asarray(h, dtype=np.int64).ravel() for h in histories] + [np.empty(0, np.int64)])
    if cols.size and (cols.min() < 0 or cols.max() > n_items):
        raise ValueError(f"histories hold item indices outside 0..{n_items}")
    rows = np.repeat(np.arange(len(histories)), lengths)
    data = np.ones(cols.size, dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(histories), n_items + 1))
    matrix.sum_duplicates()
    return matrix


def _bought(train: pl.DataFrame, n_items: int, dtype: type) -> sp.csr_matrix:
    """Who bought what, 1 per (customer, item) however often: `[customers, n_items + 1]`."""
    users = train.select(pl.col(c.CUSTOMER_ID).rank("dense") - 1).to_series().to_numpy()
    items = train[ITEM_IDX].to_numpy().astype(np.int64)
    bought = sp.csr_matrix((np.ones(len(users), dtype=dtype), (users, items)), shape=(int(users.max()) + 1, n_items + 1))
    bought.sum_duplicates()
    bought.data[:] = 1.0
    return bought


def _finish(scores: np.ndarray) -> np.ndarray:
    """float32 scores with the padding column at -inf."""
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    scores[:, 0] = -np.inf
    return scores


class Popularity:
    """Most purchased items in the last `window_days` of training, all-time purchases breaking ties.

    The score is the item's dense rank under (recent count, all-time count), exact in float32.
    """

    def __init__(self, window_days: int) -> None:
        if window_days < 1:
            raise ValueError(f"window_days must be at least 1, got {window_days}")
        self.window_days = window_days

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        all_time = _item_counts(train[ITEM_IDX], n_items)
        start = train[c.TIMESTAMP].max() - timedelta(days=self.window_days)
        recent = _item_counts(train.filter(pl.col(c.TIMESTAMP) >= start)[ITEM_IDX], n_items)
        rank, _ = _dense_rank(recent * (all_time.max() + 1) + all_time)
        self.row_ = rank.astype(np.float32)
        self.row_[0] = -np.inf
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.row_, (len(histories), self.row_.size)).copy()


class PersonalPopularity:
    """The user's own purchase counts, with global all-time popularity in [0, 0.5) breaking ties."""

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        self.n_items_ = n_items
        self.global_ = _tie_breaker(_item_counts(train[ITEM_IDX], n_items), 0.5)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        scores = _history_matrix(histories, self.n_items_).toarray()
        scores += self.global_
        return _finish(scores)


class ItemKNN:
    """Item-item cosine over who bought what, `neighbours` most similar items kept per item.

    A user's score is the sum of the similarity rows of their distinct history items, with global popularity in
    [0, 1e-3) breaking ties.
    """

    def __init__(self, neighbours: int) -> None:
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, got {neighbours}")
        self.neighbours = neighbours

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        self.n_items_ = n_items
        counts = _item_counts(train[ITEM_IDX], n_items)
        self.global_ = _tie_breaker(counts, 1e-3)
        bought = _bought(train, n_items, np.float32)
        norms = np.sqrt(np.asarray(bought.sum(axis=0)).ravel())
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
        by_item = bought.T.tocsr()
        blocks = []
        for lo in range(0, n_items + 1, _KNN_BLOCK):
            hi = min(lo + _KNN_BLOCK, n_items + 1)
            block = (by_item[lo:hi] @ bought).tocoo()
            keep = block.row + lo != block.col
            rows, cols = block.row[keep], block.col[keep]
            sims = block.data[keep] * inverse[rows + lo] * inverse[cols]
            blocks.append(_top_per_row(rows, cols, sims, hi - lo, n_items + 1, self.neighbours))
        self.similarity_ = sp.vstack(blocks, format="csr")
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        distinct = _history_matrix(histories, self.n_items_)
        distinct.data[:] = 1.0
        scores = (distinct @ self.similarity_).toarray()
        scores += self.global_
        return _finish(scores)


class RecencyFrequency:
    """The user's own purchases weighted by recency, the personal part of TIFU-KNN (Hu et al., SIGIR 2020).

    A purchase `n` steps before the latest weighs 0.5 ** (n / half_life); an item's score is 1 + the sum of its
    weights, so every item the user bought ranks above every other, re-bought-lately first. Items never bought
    follow by global all-time popularity in [0, 0.5).
    """

    def __init__(self, half_life: float) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.half_life = half_life

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        self.n_items_ = n_items
        self.global_ = _tie_breaker(_item_counts(train[ITEM_IDX], n_items), 0.5)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        scores = np.broadcast_to(self.global_, (len(histories), self.n_items_ + 1)).copy()
        for row, history in enumerate(histories):
            items = np.asarray(history, dtype=np.int64).ravel()
            if items.size:
                weights = 0.5 ** (np.arange(items.size - 1, -1, -1) / self.half_life)
                seen = np.unique(items)
                scores[row, seen] = 1.0
                np.add.at(scores[row], items, weights.astype(np.float32))
        return _finish(scores)


class TooLarge(ValueError):
    """The catalogue is too large for this baseline: the evaluate stage skips it and says why."""


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019): item-item weights in closed form.

    B = I - P diag(1 / diag(P)) with P = (X^T X + lambda I)^-1 over the binary user-item matrix X, diag(B) = 0;
    a user's scores are x_u B. Dense in the catalogue size: refused above `max_items` items.
    """

    def __init__(self, l2: float, max_items: int) -> None:
        if l2 <= 0:
            raise ValueError(f"l2 must be positive, got {l2}")
        self.l2, self.max_items = l2, max_items

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        if n_items > self.max_items:
            raise TooLarge(f"{n_items} items need a dense {n_items} x {n_items} inverse, over "
                           f"evaluate.ease_max_items ({self.max_items})")
        self.n_items_ = n_items
        counts = _item_counts(train[ITEM_IDX], n_items)  # validates the indices
        bought = _bought(train, n_items, np.float64)
        gram = (bought.T @ bought).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)
        weights[np.diag_indices_from(weights)] = 0.0
        weights[0, :] = weights[:, 0] = 0.0
        self.weights_ = weights.astype(np.float32)
        self.global_ = _tie_breaker(counts, 1e-6)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        distinct = _history_matrix(histories, self.n_items_)
        distinct.data[:] = 1.0
        scores = np.asarray(distinct @ self.weights_)
        scores += self.global_
        return _finish(scores)


def _top_per_row(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int, n: int
) -> sp.csr_matrix:
    """The `n` largest values per row (ties to the lower column) as a sparse matrix."""
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    keep = np.arange(rows.size) - starts[rows] < n
    return sp.csr_matrix((values[keep], (rows[keep], cols[keep])), shape=(n_rows, n_cols))


BASELINES: dict[str, Callable[..., Baseline]] = {
    "popularity": Popularity,
    "personal_popularity": PersonalPopularity,
    "recency_frequency": RecencyFrequency,
    "item_knn": ItemKNN,
    "ease": EASE,
}


def fit_baselines(e: EvaluateParams, train: pl.DataFrame, n_items: int) -> tuple[dict[str, Baseline], dict[str, str]]:
    """Every baseline in `evaluate.baselines`, configured from the evaluate params and fitted on `train`; and, by name,
    why those too large for the catalogue were left out."""
    fitted, skipped = {}, {}
    for name in e.baselines:
        baseline = build_baseline(name, popularity_window_days=e.popularity_window_days, knn_neighbours=e.knn_neighbours,
                                  recency_half_life=e.recency_half_life, ease_l2=e.ease_l2, ease_max_items=e.ease_max_items)
        try:
            fitted[name] = baseline.fit(train, n_items)
        except TooLarge as err:
            skipped[name] = str(err)
    return fitted, skipped


def build_baseline(name: str, *, popularity_window_days: int, knn_neighbours: int, recency_half_life: float = 20,
                   ease_l2: float = 500, ease_max_items: int = 10_000) -> Baseline:
    """An unfitted baseline by name, configured from the `evaluate` params."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline '{name}'; choose from {', '.join(BASELINES)}")
    options = {
        "popularity": {"window_days": popularity_window_days},
        "recency_frequency": {"half_life": recency_half_life},
        "item_knn": {"neighbours": knn_neighbours},
        "ease": {"l2": ease_l2, "max_items": ease_max_items},
    }
    return BASELINES[name](**options.get(name, {}))
