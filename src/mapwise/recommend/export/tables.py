"""The tables a bundle carries for serving: the catalogue (filters, cold start) and customer histories."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from mapwise import columns as c
from mapwise.bundles.format import PURCHASED, RECENT, RECENT_POPULARITY
from mapwise.profiles.build import derive_categories
from mapwise.recommend.split import POPULARITY, purchases
from mapwise.columns import ITEM_IDX


def item_table(
    split_items: pl.DataFrame, items: pl.DataFrame, events: pl.DataFrame, *, category_tokens: int, window_days: int
) -> pl.DataFrame:
    """The model's item index with what filters and cold start need (popularity over the last `window_days`)."""
    categories = derive_categories(items, category_tokens)
    bought = purchases(events)
    last = bought[c.TIMESTAMP].max()
    recent = (
        bought.filter(pl.col(c.TIMESTAMP) >= last - timedelta(days=window_days)).group_by(c.ITEM_ID).len(RECENT_POPULARITY)
        if last is not None else pl.DataFrame(schema={c.ITEM_ID: pl.String, RECENT_POPULARITY: pl.UInt32})
    )
    return (
        split_items.select(ITEM_IDX, c.ITEM_ID, POPULARITY)
        .join(items.select(c.ITEM_ID, c.TITLE, c.PRICE), on=c.ITEM_ID, how="left")
        .join(categories, on=c.ITEM_ID, how="left")
        .join(recent, on=c.ITEM_ID, how="left")
        .with_columns(pl.col(RECENT_POPULARITY).fill_null(0).cast(pl.Int64))
        .select(ITEM_IDX, c.ITEM_ID, c.TITLE, c.CATEGORY, c.PRICE, POPULARITY, RECENT_POPULARITY)
        .sort(ITEM_IDX)
    )


def customer_table(events: pl.DataFrame, split_items: pl.DataFrame, max_len: int) -> pl.DataFrame:
    """Per customer: the last `max_len` known items bought (model input) and every known item bought."""
    indexed = purchases(events).join(split_items.select(c.ITEM_ID, ITEM_IDX), on=c.ITEM_ID, how="inner",
                                     maintain_order="left")
    return (
        indexed.group_by(c.CUSTOMER_ID, maintain_order=True)
        .agg(pl.col(ITEM_IDX).tail(max_len).alias(RECENT), pl.col(ITEM_IDX).unique().sort().alias(PURCHASED))
        .sort(c.CUSTOMER_ID)
    )
