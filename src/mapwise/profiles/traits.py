"""Customer traits as of a cutoff: per customer, each trait's latest value observed before it."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from mapwise import columns as c
from mapwise.sources.contracts import TRAIT_BASE_COLUMNS, UTC_TIMESTAMP


def trait_names(traits: pl.DataFrame) -> list[str]:
    """The trait columns of a customer_traits table."""
    return [col for col in traits.columns if col not in TRAIT_BASE_COLUMNS]


def traits_as_of(traits: pl.DataFrame, as_of: datetime | None = None) -> pl.DataFrame:
    """One row per customer: each trait's latest non-null value observed before `as_of`.

    Rows without `observed_at` hold before any cutoff; `as_of=None` takes every row.
    """
    names = trait_names(traits)
    rows = traits.lazy().filter(pl.col(c.CUSTOMER_ID).is_not_null())
    if as_of is not None:
        seen = pl.col(c.OBSERVED_AT).is_null() | (pl.col(c.OBSERVED_AT) < pl.lit(as_of, dtype=UTC_TIMESTAMP))
        rows = rows.filter(seen)
    rows = rows.sort(c.OBSERVED_AT, nulls_last=False, maintain_order=True)
    latest = rows.group_by(c.CUSTOMER_ID, maintain_order=True).agg(pl.col(n).drop_nulls().last() for n in names)
    return latest.sort(c.CUSTOMER_ID).collect()


def with_traits(profiles: pl.DataFrame, traits: pl.DataFrame, as_of: datetime | None) -> pl.DataFrame:
    """Profiles with the customers' traits as of the profiles' cutoff (null where a customer has none)."""
    known = traits_as_of(traits, as_of)
    clash = sorted(set(trait_names(traits)) & set(profiles.columns))
    if clash:
        known = known.rename({n: f"trait_{n}" for n in clash})
    return profiles.join(known, on=c.CUSTOMER_ID, how="left")
