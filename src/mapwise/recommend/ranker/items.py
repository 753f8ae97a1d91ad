"""Per-item statistics the ranker reads: popularity and its trend, repurchase habits, price."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.columns import ITEM_IDX
from mapwise.recommend.window import NEVER

ITEM_FEATURES = ("log_popularity", "log_recent_popularity", "trend", "repeat_rate", "log_repeat_gap", "log_price",
                 "price_quantile", "price_missing")


def item_prices(split_items: pl.DataFrame, items: pl.DataFrame) -> np.ndarray:
    """[N + 1] price of each indexed item from the canonical items table (NaN where unknown)."""
    price = split_items.join(items.select(c.ITEM_ID, c.PRICE), on=c.ITEM_ID, how="left").sort(ITEM_IDX)[c.PRICE]
    return np.concatenate([[np.nan], price.cast(pl.Float64).fill_null(np.nan).to_numpy()])


def _per_item(frame: pl.DataFrame, column: str, n_items: int, fill: float) -> np.ndarray:
    out = np.full(n_items + 1, fill, dtype=np.float64)
    if frame.height:
        out[frame[ITEM_IDX].to_numpy()] = frame[column].to_numpy()
    return out


def repeat_gaps(purchases: pl.DataFrame, n_items: int) -> np.ndarray:
    """Median purchases between a customer's consecutive purchases of the same item; NEVER if nobody re-bought it."""
    gaps = (
        purchases.with_columns(pl.int_range(pl.len()).over(c.CUSTOMER_ID).alias("__pos"))
        .with_columns((pl.col("__pos") - pl.col("__pos").shift(1).over(c.CUSTOMER_ID, ITEM_IDX)).alias("__gap"))
        .drop_nulls("__gap")
        .group_by(ITEM_IDX).agg(pl.col("__gap").median().alias("gap"))
    )
    return _per_item(gaps, "gap", n_items, NEVER)


def item_statistics(purchases: pl.DataFrame, n_items: int, price: np.ndarray, window_days: int) -> tuple[np.ndarray, np.ndarray]:
    """`[N + 1, len(ITEM_FEATURES)]` float32 features and the `[N + 1]` repeat gaps, from purchases in time order."""
    counts = np.bincount(purchases[ITEM_IDX].to_numpy(), minlength=n_items + 1).astype(np.float64)
    end = purchases[c.TIMESTAMP].max()
    start = purchases[c.TIMESTAMP].min()
    recent = np.bincount(purchases.filter(pl.col(c.TIMESTAMP) >= end - timedelta(days=window_days))[ITEM_IDX].to_numpy(),
                         minlength=n_items + 1).astype(np.float64)
    span_days = max((end - start).total_seconds() / 86400, window_days)
    trend = (recent + 1) / (counts * window_days / span_days + 1)
    per_buyer = purchases.group_by(ITEM_IDX, c.CUSTOMER_ID).len("n")
    repeat = per_buyer.group_by(ITEM_IDX).agg((pl.col("n") >= 2).mean().alias("rate"))
    gaps = repeat_gaps(purchases, n_items)
    price = np.asarray(price, dtype=np.float64)
    known = np.isfinite(price) & (price >= 0)
    quantile = np.full(n_items + 1, -1.0)
    if known.any():
        quantile[known] = (np.argsort(np.argsort(price[known])) + 0.5) / known.sum()
    table = np.stack([
        np.log1p(counts), np.log1p(recent), trend, _per_item(repeat, "rate", n_items, 0.0), np.log1p(gaps),
        np.where(known, np.log1p(np.where(known, price, 0.0)), -1.0), quantile, (~known).astype(np.float64),
    ], axis=1)
    table[0] = 0.0
    return table.astype(np.float32), gaps.astype(np.float32)
