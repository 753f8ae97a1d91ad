"""Customer slices for evaluation and the promotion gate: RFM segment and new vs returning, as of the cutoff; for
evaluation also what the customer bought in the test window: repeats of their history, new items, or both."""

from __future__ import annotations

import polars as pl

from mapwise import columns as c
from mapwise.params import Params
from mapwise.profiles.build import build_profiles
from mapwise.recommend.split import HISTORY, TARGETS, Split

NEW_CUSTOMER_DAYS = 90  # customers whose first purchase is this recent count as new


def customer_slices(params: Params) -> dict[str, dict[str, str]]:
    """{slice: {customer_id: label}} from profiles taken at the split's cutoff (point in time); none for other splits."""
    if params.split.method != "temporal":
        return {}
    tables = {t: pl.read_parquet(params.ingest.canonical_dir / f"{t}.parquet") for t in ("events", "customers", "items")}
    profiles = build_profiles(
        tables["events"], tables["customers"], tables["items"], as_of=params.split.cutoff,
        sequence_length=params.profile.sequence_length, category_tokens=params.profile.category_tokens,
    )
    new = pl.when(pl.col(c.TENURE_DAYS) < NEW_CUSTOMER_DAYS).then(pl.lit("new")).otherwise(pl.lit("returning"))
    labels = profiles.select(c.CUSTOMER_ID, c.SEGMENT, new.alias("tenure"))
    return {name: dict(labels.select(c.CUSTOMER_ID, name).iter_rows()) for name in (c.SEGMENT, "tenure")}


def target_slices(split: Split) -> dict[str, dict[str, str]]:
    """{"targets": {customer_id: repeat | explore | mixed}}: whether the test purchases were all bought before,
    none of them, or some."""
    repeats = pl.col(TARGETS).list.set_intersection(pl.col(HISTORY)).list.len()
    label = (pl.when(repeats == pl.col(TARGETS).list.len()).then(pl.lit("repeat"))
             .when(repeats == 0).then(pl.lit("explore")).otherwise(pl.lit("mixed")))
    return {"targets": dict(split.test.select(c.CUSTOMER_ID, label.alias("targets")).iter_rows())}
