"""Leakage-free splits of purchase events into training interactions and evaluation windows.

Everything a model or baseline may learn from (the item index, popularity, the training
interactions) comes from the training period alone. Evaluation rows carry each customer's
history (item indices in time order, known items only) and the distinct known items bought in
the window; items first seen after training cannot be scored by anything and are only counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from mapwise import columns as c
from mapwise.columns import ITEM_IDX
from mapwise.atomic import replacing_folder
from mapwise.errors import MapwiseError
from mapwise.params import SplitParams

HISTORY = "history"
TARGETS = "targets"
UNKNOWN_TARGETS = "unknown_targets"
POPULARITY = "popularity"
PADDING_IDX = 0
_PARTS = ("items", "train", "valid", "test", "refit")

VALIDATION_K = 10  # training selects on validation NDCG at this K (over fewer items, over all of them)
MIN_ITEMS = 2  # with fewer there is nothing to rank: the sequence models refuse to train
FEW_SEQUENCES = 10  # training sequences below which the split stage warns that the models will learn little
STILL_USEFUL = ("on data like this, ingest, profile (RFM and segments) and propensity/uplift still make sense; "
                "the recommender stages (train, evaluate, export) do not")


@dataclass(frozen=True)
class Split:
    """Item index, training interactions and the validation and test windows."""

    items: pl.DataFrame  # item_idx (1..n), item_id, popularity (training purchases)
    train: pl.DataFrame  # customer_id, item_idx, timestamp: one row per training purchase
    valid: pl.DataFrame  # customer_id, history, targets, unknown_targets
    test: pl.DataFrame
    refit: pl.DataFrame  # as train, but everything before the test (training + validation windows; known items)

    @property
    def n_items(self) -> int:
        return self.items.height

    def summary(self) -> dict:
        def window(frame: pl.DataFrame) -> dict:
            return {
                "customers": frame.height,
                "targets": int(frame[TARGETS].list.len().sum() or 0),
                "unknown_targets": int(frame[UNKNOWN_TARGETS].sum() or 0),
            }

        return {
            "items": self.n_items,
            "train_interactions": self.train.height,
            "refit_interactions": self.refit.height,
            "train_customers": self.train[c.CUSTOMER_ID].n_unique(),
            "valid": window(self.valid),
            "test": window(self.test),
        }


def describe_split(p: SplitParams) -> dict:
    """What the split method used, for the reports: its name and its own settings, none another method reads."""
    if p.method == "leave_last_out":
        return {"method": p.method, "held_out": "each customer's last purchase (test) and the one before it (validation)",
                "min_history": p.min_history}
    return {"method": p.method, "cutoff": p.cutoff.isoformat(),
            "validation_start": (p.cutoff - timedelta(days=p.validation_days)).isoformat(),
            "horizon_end": (p.cutoff + timedelta(days=p.horizon_days)).isoformat(), "min_history": p.min_history}


def training_sequences(split: Split) -> int:
    """Customers with two or more training purchases: the sequences the models learn next items from."""
    return split.train.group_by(c.CUSTOMER_ID).len().filter(pl.col("len") >= 2).height


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def untrainable(split: Split) -> str | None:
    """Why the sequence recommenders cannot train on this split (None when they can)."""
    if split.n_items < MIN_ITEMS:
        return f"the split has {_plural(split.n_items, 'item')} in its training period"
    if training_sequences(split) == 0:
        return f"the split has {_plural(split.n_items, 'item')} but no customer with 2+ training purchases"
    if split.valid.height == 0:
        return (f"the split has {_plural(split.n_items, 'item')} but no validation customer (a known item bought in "
                "the validation window)")
    return None


def require_trainable(split: Split) -> None:
    """Refuse, in one line, a split too small for the sequence recommenders: what it has, what they need, what else works."""
    problem = untrainable(split)
    if problem:
        raise MapwiseError(
            f"{problem}: the sequence recommenders need at least {MIN_ITEMS} items, a customer with 2+ training "
            f"purchases and a validation customer; {STILL_USEFUL}"
        )


def small_data_warnings(split: Split, *, ks: Sequence[int]) -> list[str]:
    """What the models and metrics will make of a small catalogue or few sequences (empty when nothing to say)."""
    problem = untrainable(split)
    if problem:  # the rest would not matter
        return [f"{problem}: train will refuse; {STILL_USEFUL}"]
    out = []
    ranked = max([*ks, VALIDATION_K])
    if split.n_items < ranked:
        out.append(
            f"{_plural(split.n_items, 'item')}, fewer than the top {ranked} the metrics rank (evaluate.ks {list(ks)}, "
            f"validation NDCG@{VALIDATION_K}): lists are cut to the {split.n_items} items, so every K >= "
            f"{split.n_items} ranks the whole catalogue"
        )
    sequences = training_sequences(split)
    if 0 < sequences < FEW_SEQUENCES:
        out.append(f"only {_plural(sequences, 'training sequence')} (customers with 2+ training purchases): the "
                   "sequence models will learn little; compare them with the baselines")
    return out


def load_split(folder: Path) -> Split:
    """A split written by the split stage."""
    missing = [name for name in _PARTS if not (folder / f"{name}.parquet").exists()]
    if missing:
        raise MapwiseError(f"{folder}: no {', '.join(missing)} parquet; run the split stage first")
    return Split(*(pl.read_parquet(folder / f"{name}.parquet") for name in _PARTS))


def save_split(split: Split, folder: Path) -> None:
    """Write the split's four tables as parquet files, replacing the folder whole."""
    with replacing_folder(folder) as build:
        for name in _PARTS:
            getattr(split, name).write_parquet(build / f"{name}.parquet")


def purchases(events: pl.DataFrame) -> pl.DataFrame:
    """Purchase events in time order (stable within a timestamp)."""
    return (
        events.filter(pl.col(c.EVENT_TYPE) == "purchase")
        .select(c.CUSTOMER_ID, c.ITEM_ID, c.TIMESTAMP)
        .with_row_index("__order")
        .sort(c.TIMESTAMP, "__order")
        .drop("__order")
    )


def item_index(train: pl.DataFrame) -> pl.DataFrame:
    """Items seen in training, most purchased first (ties by id), indexed from 1 (0 is padding)."""
    counts = train.group_by(c.ITEM_ID).len(POPULARITY).sort([POPULARITY, c.ITEM_ID], descending=[True, False])
    return counts.select(
        pl.int_range(1, counts.height + 1, dtype=pl.Int32).alias(ITEM_IDX), c.ITEM_ID, pl.col(POPULARITY).cast(pl.Int64)
    )


def _indexed(frame: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    return frame.join(items.select(c.ITEM_ID, ITEM_IDX), on=c.ITEM_ID, how="left", maintain_order="left")


def _known(bought: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Purchases of items in the index, shaped like `train`."""
    return _indexed(bought, items).drop_nulls(ITEM_IDX).select(c.CUSTOMER_ID, ITEM_IDX, c.TIMESTAMP)


def _window(history: pl.DataFrame, window: pl.DataFrame, items: pl.DataFrame, min_history: int) -> pl.DataFrame:
    """One row per customer with at least `min_history` known past purchases and a purchase in the window."""
    past = (
        _indexed(history, items)
        .drop_nulls(ITEM_IDX)
        .group_by(c.CUSTOMER_ID, maintain_order=True)
        .agg(pl.col(ITEM_IDX).alias(HISTORY))
        .filter(pl.col(HISTORY).list.len() >= min_history)
    )
    future = (
        _indexed(window, items)
        .group_by(c.CUSTOMER_ID, maintain_order=True)
        .agg(
            pl.col(ITEM_IDX).drop_nulls().unique().sort().alias(TARGETS),
            pl.col(c.ITEM_ID).filter(pl.col(ITEM_IDX).is_null()).n_unique().cast(pl.Int32).alias(UNKNOWN_TARGETS),
        )
    )
    rows = past.join(future, on=c.CUSTOMER_ID, how="inner").filter(pl.col(TARGETS).list.len() > 0)
    return rows.sort(c.CUSTOMER_ID)


def temporal_split(
    events: pl.DataFrame, *, cutoff: datetime, validation_days: int, horizon_days: int, min_history: int
) -> Split:
    """Train before T - validation; validate on [T - validation, T); test on [T, T + horizon)."""
    bought = purchases(events)
    start = cutoff - timedelta(days=validation_days)
    end = cutoff + timedelta(days=horizon_days)
    ts = pl.col(c.TIMESTAMP)
    before_valid, before_test = bought.filter(ts < start), bought.filter(ts < cutoff)
    items = item_index(before_valid)
    train = _indexed(before_valid, items).select(c.CUSTOMER_ID, ITEM_IDX, c.TIMESTAMP)
    valid = _window(before_valid, bought.filter((ts >= start) & (ts < cutoff)), items, min_history)
    test = _window(before_test, bought.filter((ts >= cutoff) & (ts < end)), items, min_history)
    return Split(items, train, valid, test, _known(before_test, items))


def leave_last_out_split(events: pl.DataFrame, *, min_history: int) -> Split:
    """Per customer: the last purchase is the test target, the one before it the validation target."""
    bought = purchases(events).with_columns(
        pl.int_range(pl.len()).reverse().over(c.CUSTOMER_ID).alias("__from_end")
    )
    bought = bought.filter(pl.len().over(c.CUSTOMER_ID) >= min_history + 2)
    position = pl.col("__from_end")
    training = bought.filter(position >= 2)
    items = item_index(training)
    train = _indexed(training, items).select(c.CUSTOMER_ID, ITEM_IDX, c.TIMESTAMP)
    valid = _window(training, bought.filter(position == 1), items, min_history)
    test = _window(bought.filter(position >= 1), bought.filter(position == 0), items, min_history)
    return Split(items, train, valid, test, _known(bought.filter(position >= 1).drop("__from_end"), items))
