"""Full-ranking recommender metrics: every item is ranked for every user, never a sample of negatives.

Item indices run 1..n_items; column 0 of a score matrix is padding and is never recommended.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_TOP_K_CELLS = 1 << 24  # score cells per chunk in `top_k`: bounds the temporary copies
_BOOTSTRAP_CELLS = 1 << 23  # resampled indices per chunk in `bootstrap_ci`


def top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The `k` best items per user, by descending score, ties to the lower item index.

    `scores` is `[n_users, n_items + 1]`; `exclude[u]` lists items never to recommend to user u.
    NaN scores rank with -inf. Raises ValueError when a user has fewer than `k` recommendable items.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_users, n_items + 1], got shape {scores.shape}")
    n_users, width = scores.shape
    if not 1 <= k <= width - 1:
        raise ValueError(f"k must be in 1..{width - 1} (the number of items), got {k}")
    if exclude is not None and len(exclude) != n_users:
        raise ValueError(f"exclude has {len(exclude)} entries for {n_users} users")
    out = np.empty((n_users, k), dtype=np.int64)
    step = max(1, _TOP_K_CELLS // width)
    for lo in range(0, n_users, step):
        hi = min(lo + step, n_users)
        out[lo:hi] = _top_k_block(scores[lo:hi], k, None if exclude is None else exclude[lo:hi])
    return out


def _top_k_block(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None) -> np.ndarray:
    """`top_k` on a block of users, on a negated copy so that ascending order is the ranking."""
    cost = scores.astype(np.float64 if scores.dtype == np.float64 else np.float32)
    np.negative(cost, out=cost)
    banned = np.zeros(cost.shape, dtype=bool)
    banned[:, 0] = True
    if exclude is not None:
        lengths = [len(e) for e in exclude]
        cols = np.concatenate([np.asarray(e, dtype=np.int64).ravel() for e in exclude] + [np.empty(0, np.int64)])
        if cols.size and (cols.min() < 0 or cols.max() >= cost.shape[1]):
            raise ValueError(f"exclude holds item indices outside 0..{cost.shape[1] - 1}")
        banned[np.repeat(np.arange(len(exclude)), lengths), cols] = True
    short = np.flatnonzero((~banned).sum(axis=1) < k)
    if short.size:
        raise ValueError(f"{short.size} users have fewer than k={k} recommendable items")
    cost[np.isnan(cost)] = np.inf
    cost[banned] = np.inf
    # Ties at the k-th cost are filled by the lowest item indices, then the k are sorted stably.
    kth = np.partition(cost, k - 1, axis=1)[:, k - 1 : k]
    take = cost < kth  # banned items cost inf, so never below the k-th
    tied = (cost == kth) & ~banned
    need = k - take.sum(axis=1, keepdims=True)
    take |= tied
    over = np.flatnonzero(tied.sum(axis=1, keepdims=True) > need)
    if over.size:
        excess = tied[over] & (np.cumsum(tied[over], axis=1, dtype=np.int32) > need[over])
        take[over] &= ~excess
    items = np.nonzero(take)[1].reshape(-1, k)
    order = np.argsort(np.take_along_axis(cost, items, axis=1), axis=1, kind="stable")
    return np.take_along_axis(items, order, axis=1)


def ranking_metrics(recs: np.ndarray, targets: Sequence[np.ndarray], ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user `hr@K`, `recall@K`, `ndcg@K` and `mrr@K` (binary relevance) for each K in `ks`.

    `recs` is `[n_users, k_max]` distinct items per row; `targets[u]` the user's relevant items (repeats count once).
    """
    recs = np.asarray(recs, dtype=np.int64)
    n_users, k_max = recs.shape
    if len(targets) != n_users:
        raise ValueError(f"targets has {len(targets)} entries for {n_users} users")
    bad_k = [k for k in ks if not 1 <= k <= k_max]
    if bad_k:
        raise ValueError(f"every K must be in 1..{k_max} (the recommendation list length), got {bad_k}")
    if k_max > 1 and (np.diff(np.sort(recs, axis=1), axis=1) == 0).any():
        raise ValueError("a user's recommendations repeat an item")
    lengths = np.array([len(t) for t in targets], dtype=np.int64)
    if (lengths == 0).any():
        raise ValueError(f"{int((lengths == 0).sum())} users have no target items")
    flat = np.concatenate([np.asarray(t, dtype=np.int64).ravel() for t in targets])
    if recs.min(initial=0) < 0 or flat.min() < 0:
        raise ValueError("item indices must be non-negative")
    # One key per (user, item) pair makes membership a single vectorised isin.
    base = int(max(recs.max(initial=0), flat.max())) + 1
    pairs = np.unique(np.repeat(np.arange(n_users), lengths) * base + flat)
    n_targets = np.bincount(pairs // base, minlength=n_users)
    hits = np.isin(np.arange(n_users)[:, None] * base + recs, pairs)

    discount = 1.0 / np.log2(np.arange(2, k_max + 2))
    ideal = np.cumsum(discount)
    hit_count = np.cumsum(hits, axis=1)
    dcg = np.cumsum(hits * discount, axis=1)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, k_max + 1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hr@{k}"] = (hit_count[:, k - 1] > 0).astype(np.float64)
        out[f"recall@{k}"] = hit_count[:, k - 1] / n_targets
        out[f"ndcg@{k}"] = dcg[:, k - 1] / ideal[np.minimum(n_targets, k) - 1]
        out[f"mrr@{k}"] = np.where(first <= k, 1.0 / first, 0.0)
    return out


def coverage(recs: np.ndarray, n_items: int) -> float:
    """Share of the catalogue recommended to at least one user."""
    return np.unique(recs).size / n_items


def average_popularity(recs: np.ndarray, popularity: np.ndarray) -> float:
    """Mean popularity of the recommended items, over every recommendation slot."""
    return float(np.asarray(popularity, dtype=np.float64)[recs].mean())


def bootstrap_ci(
    values: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean over users with its percentile bootstrap interval, resampling users."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    n = values.size
    step = max(1, _BOOTSTRAP_CELLS // n)
    means = np.empty(n_resamples)
    for lo in range(0, n_resamples, step):
        hi = min(lo + step, n_resamples)
        means[lo:hi] = values[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(values.mean()), float(low), float(high)


def paired_bootstrap_diff(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high) of a - b over the same users, resampling users jointly."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.size} and {b.size}")
    return bootstrap_ci(a - b, n_resamples=n_resamples, seed=seed, level=level)
