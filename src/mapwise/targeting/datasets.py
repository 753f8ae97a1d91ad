"""Targeting tables: one row per customer (or session) with its features, its outcome and its split.

Labels come only from after the features' cutoff (next purchase) or from the outcome of the
contact itself (campaigns, sessions); no column known only afterwards is a feature.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from mapwise import columns as c
from mapwise.errors import MapwiseError
from mapwise.profiles.build import build_profiles
from mapwise.profiles.traits import traits_as_of
from mapwise.sources.contracts import UTC_TIMESTAMP

ROW_ID = "row_id"  # the customer (or session) a row is about
LABEL = "label"
SPLIT = "split"
SEQUENCE = "sequence"  # item ids, oldest first (next_purchase)
TRAIN, VALIDATION, TEST = "train", "validation", "test"
# never features: keys, provenance, outcomes, and what profiles keep as lists or free text
NOT_FEATURES = frozenset({ROW_ID, LABEL, SPLIT, SEQUENCE, c.CUSTOMER_ID, c.SOURCE, c.AS_OF, c.RECORD_ID, c.OBSERVED_AT,
                          c.EXPOSURE_ID, c.SESSION_ID, c.CAMPAIGN_ID, c.TIMESTAMP, c.RECENT_ITEMS, c.INTERESTS,
                          c.ARM, c.TREATED, c.VISIT, c.CONVERSION, c.SPEND, c.PURCHASED, c.CONSENT_EMAIL,
                          c.CONSENT_SMS, c.CONSENT_PHONE})


def stratified_split(labels: np.ndarray, validation: float, test: float, seed: int) -> np.ndarray:
    """TRAIN / VALIDATION / TEST per row, the shares kept within each label value, reproducible by seed."""
    rng = np.random.default_rng(seed)
    out = np.full(len(labels), TRAIN, dtype=object)
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        n_test, n_val = round(len(rows) * test), round(len(rows) * validation)
        out[rows[:n_test]] = TEST
        out[rows[n_test:n_test + n_val]] = VALIDATION
    return out


def customer_features(customer_ids: pl.DataFrame, customers: pl.DataFrame, traits: pl.DataFrame,
                      as_of: datetime | None) -> pl.DataFrame:
    """`customer_ids` with the customers table's attributes and the traits as of `as_of` joined."""
    attrs = customers.drop(c.CONSENT_EMAIL, c.CONSENT_SMS, c.CONSENT_PHONE, strict=False)
    known = traits_as_of(traits, as_of)
    out = customer_ids.join(attrs, on=c.CUSTOMER_ID, how="left")
    clash = sorted(set(known.columns) & set(out.columns) - {c.CUSTOMER_ID})
    return out.join(known.rename({n: f"trait_{n}" for n in clash}), on=c.CUSTOMER_ID, how="left")


def next_purchase_table(events: pl.DataFrame, customers: pl.DataFrame, items: pl.DataFrame, traits: pl.DataFrame, *,
                        cutoff: datetime, horizon_days: int, snapshots: int, sequence_length: int,
                        category_tokens: int) -> pl.DataFrame:
    """Profiles as of several cutoffs, labelled by a purchase within the horizon after each.

    Test: as of `cutoff`; validation: one horizon before; training: `snapshots` cutoffs before that,
    each a horizon apart, so no label window overlaps the next split's.
    """
    horizon = timedelta(days=horizon_days)
    plan = [(cutoff, TEST), (cutoff - horizon, VALIDATION)]
    plan += [(cutoff - horizon * (2 + i), TRAIN) for i in range(snapshots)]
    bought = events.filter(pl.col(c.EVENT_TYPE) == c.PURCHASE, pl.col(c.CUSTOMER_ID).is_not_null())
    frames = []
    for as_of, split in plan:
        profiles = build_profiles(events, customers, items, as_of=as_of, sequence_length=sequence_length,
                                  category_tokens=category_tokens)
        if profiles.is_empty():
            continue
        window = bought.filter(pl.col(c.TIMESTAMP) >= pl.lit(as_of, dtype=UTC_TIMESTAMP),
                               pl.col(c.TIMESTAMP) < pl.lit(as_of + horizon, dtype=UTC_TIMESTAMP))
        buyers = window.select(pl.col(c.CUSTOMER_ID).unique(), pl.lit(True).alias(LABEL))
        rows = profiles.drop(c.COUNTRY).join(buyers, on=c.CUSTOMER_ID, how="left").with_columns(
            pl.col(LABEL).fill_null(False), pl.lit(split).alias(SPLIT), pl.col(c.RECENT_ITEMS).alias(SEQUENCE),
            pl.col(c.CUSTOMER_ID).alias(ROW_ID))
        frames.append(customer_features(rows, customers, traits, as_of))
    if not frames or not any(f[SPLIT][0] == TRAIN for f in frames):
        raise MapwiseError(f"next_purchase: no customer purchased before the training cutoffs "
                           f"({(cutoff - horizon * 2).date()} and earlier); move split.cutoff later")
    return pl.concat(frames, how="diagonal_relaxed")


def campaign_table(exposures: pl.DataFrame, customers: pl.DataFrame, traits: pl.DataFrame, campaign_id: str) -> pl.DataFrame:
    """One row per exposure of the campaign with the customer's attributes and traits (as of the contact)."""
    rows = exposures.filter(pl.col(c.CAMPAIGN_ID) == campaign_id, pl.col(c.CUSTOMER_ID).is_not_null())
    if rows.is_empty():
        known = ", ".join(sorted(exposures[c.CAMPAIGN_ID].unique().to_list())) or "none"
        raise MapwiseError(f"campaign '{campaign_id}' has no exposures with a customer (campaigns: {known})")
    rows = rows.select(c.EXPOSURE_ID, c.CUSTOMER_ID, c.ARM, c.TREATED, c.CHANNEL, c.VISIT, c.CONVERSION, c.SPEND,
                       c.TIMESTAMP).rename({c.CHANNEL: "contact_channel"})
    when = rows[c.TIMESTAMP].min()
    return customer_features(rows, customers, traits, when).with_columns(pl.col(c.EXPOSURE_ID).alias(ROW_ID))


def campaign_response_table(exposures: pl.DataFrame, customers: pl.DataFrame, traits: pl.DataFrame, campaign_id: str,
                            outcome: str, validation: float, test: float, seed: int) -> pl.DataFrame:
    rows = campaign_table(exposures, customers, traits, campaign_id).filter(pl.col(outcome).is_not_null())
    labels = rows[outcome].to_numpy()
    return rows.with_columns(pl.Series(LABEL, labels), pl.Series(SPLIT, stratified_split(labels, validation, test, seed),
                                                                   dtype=pl.String))


def session_table(sessions: pl.DataFrame, validation: float, test: float, seed: int) -> pl.DataFrame:
    rows = sessions.filter(pl.col(c.PURCHASED).is_not_null())
    if rows.is_empty():
        raise MapwiseError("sessions: no session with a known purchase outcome")
    labels = rows[c.PURCHASED].to_numpy()
    return rows.with_columns(pl.col(c.SESSION_ID).alias(ROW_ID), pl.Series(LABEL, labels),
                             pl.Series(SPLIT, stratified_split(labels, validation, test, seed), dtype=pl.String))
