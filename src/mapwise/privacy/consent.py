"""Consent: which customers may be contacted, and withholding the rest from scores and audiences.

A customer is contactable when every required flag of the customers table is true. A missing flag
(null, no column, or a customer absent from the table) follows `ConsentParams.unknown`; a customer
allowed on unknown consent keeps the reason "<flag> unknown", so reports can count them.
"""

from __future__ import annotations

import polars as pl

from mapwise import columns as c
from mapwise.params import ConsentParams

CONTACTABLE = "contactable"
REASON = "reason"
_OK, _WHY = "__consent_contactable", "__consent_reason"  # beside the frame's own columns while withholding


def _flags(customers: pl.DataFrame, p: ConsentParams) -> pl.DataFrame:
    """customer_id and the required flags; a flag no source maps is null."""
    return customers.select(
        c.CUSTOMER_ID,
        *(pl.col(f) if f in customers.columns else pl.lit(None, dtype=pl.Boolean).alias(f) for f in p.require),
    )


def _status(flags: pl.DataFrame, p: ConsentParams) -> pl.DataFrame:
    """customer_id, contactable and reason: the first refused flag, else the first unknown one, else null."""
    refused = [pl.when(pl.col(f).not_()).then(pl.lit(f"no {f}")) for f in p.require]
    unknown = [pl.when(pl.col(f).is_null()).then(pl.lit(f"{f} unknown")) for f in p.require]
    reason = pl.coalesce(*refused, *unknown, pl.lit(None, dtype=pl.String))
    blocked = reason.str.starts_with("no ") | (reason.is_not_null() & pl.lit(p.unknown == "deny"))
    return flags.select(c.CUSTOMER_ID, blocked.fill_null(False).not_().alias(CONTACTABLE), reason.alias(REASON))


def consent_status(customers: pl.DataFrame, p: ConsentParams) -> pl.DataFrame:
    """One row per customer: customer_id, contactable, and the reason (null when every required flag is true)."""
    return _status(_flags(customers, p), p)


def _counts(frame: pl.DataFrame) -> dict:
    return {"rows": frame.height, "customers": frame[c.CUSTOMER_ID].drop_nulls().n_unique()}


def withhold(frame: pl.DataFrame, customers: pl.DataFrame, p: ConsentParams) -> tuple[pl.DataFrame, dict]:
    """The rows of `frame` whose customer may be contacted, and counts of what was kept, withheld and allowed unknown.

    Customers absent from `customers` (and null ids) have unknown consent for every required flag.
    """
    ids = frame.select(c.CUSTOMER_ID).unique()
    status = _status(ids.join(_flags(customers, p), on=c.CUSTOMER_ID, how="left"), p)
    joined = frame.join(
        status.rename({CONTACTABLE: _OK, REASON: _WHY}), on=c.CUSTOMER_ID, how="left", nulls_equal=True,
        maintain_order="left",
    )
    kept, withheld = joined.filter(pl.col(_OK)), joined.filter(pl.col(_OK).not_())
    by_reason = {reason: _counts(group) for (reason,), group in withheld.group_by(_WHY)}
    report = {
        "require": list(p.require),
        "unknown": p.unknown,
        **_counts(frame),
        "kept": _counts(kept),
        "withheld": dict(sorted(by_reason.items())),
        "allowed_unknown": _counts(kept.filter(pl.col(_WHY).is_not_null())),
    }
    return kept.select(frame.columns), report
