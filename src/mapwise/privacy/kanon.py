"""k-anonymity: every exported row must share its quasi-identifiers with at least k-1 others.

Quasi-identifiers (country, age band, ...) are columns an outsider could link to another data set;
those a table lacks are skipped, or first joined from the customers, traits or profiles tables.
Nulls are a value: a group of null countries is a group like any other.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from mapwise import columns as c
from mapwise.errors import MapwiseError, one_line

_SHOWN = 5  # smallest groups listed in a report
_ROWS = "rows"


def k_anonymity(frame: pl.DataFrame, quasi_identifiers: list[str], k: int) -> dict:
    """Group sizes over the quasi-identifiers present in `frame`: what is below k, and the smallest groups."""
    used = [q for q in dict.fromkeys(quasi_identifiers) if q in frame.columns]
    report = {"k": k, "quasi_identifiers": used, "skipped": [q for q in quasi_identifiers if q not in used]}
    if not used:
        return {**report, "checked": False, "note": "no quasi-identifier present", "rows": frame.height, "groups": 0,
                "smallest_group": None, "groups_below_k": 0, "rows_below_k": 0, "smallest": []}
    sizes = frame.group_by(used).agg(pl.len().alias(_ROWS)).sort([_ROWS, *used], nulls_last=True)
    below = sizes.filter(pl.col(_ROWS) < k)
    return {
        **report,
        "checked": True,
        "rows": frame.height,
        "groups": sizes.height,
        "smallest_group": sizes[_ROWS][0] if sizes.height else None,
        "groups_below_k": below.height,
        "rows_below_k": int(below[_ROWS].sum()),
        "smallest": sizes.head(_SHOWN).to_dicts(),
    }


def enforce_k_anonymity(
    frame: pl.DataFrame,
    quasi_identifiers: list[str],
    k: int,
    on_fail: Literal["refuse", "suppress"],
    what: str,
) -> tuple[pl.DataFrame, dict]:
    """`frame` if every group has at least k rows; else refuse (MapwiseError) or suppress the rows of small groups."""
    report = k_anonymity(frame, quasi_identifiers, k)
    if not report["groups_below_k"]:
        return frame, {**report, "suppressed_rows": 0}
    used = report["quasi_identifiers"]
    if on_fail == "refuse":
        first = report["smallest"][0]
        values = ", ".join(f"{q}={one_line(str(first[q]), 40)}" for q in used)
        raise MapwiseError(
            f"{what} refused: {report['rows_below_k']} rows in {report['groups_below_k']} groups share their "
            f"quasi-identifiers ({', '.join(used)}) with fewer than k={k} rows (smallest: {values}, {first[_ROWS]} "
            f"rows); drop or coarsen a quasi-identifier, or set privacy.k_anonymity.on_fail: suppress"
        )
    kept = frame.filter(pl.len().over(used) >= k)
    return kept, {**report, "suppressed_rows": frame.height - kept.height}


def _latest(source: pl.DataFrame, column: str) -> pl.DataFrame:
    """One row per customer: the last non-null `column` (by observed_at when the table has it, else row order)."""
    rows = source.filter(pl.col(c.CUSTOMER_ID).is_not_null())
    if c.OBSERVED_AT in rows.columns:
        rows = rows.sort(c.OBSERVED_AT, nulls_last=False, maintain_order=True)
    return rows.group_by(c.CUSTOMER_ID).agg(pl.col(column).drop_nulls().last())


def with_quasi_identifiers(
    frame: pl.DataFrame, sources: list[pl.DataFrame], quasi_identifiers: list[str]
) -> pl.DataFrame:
    """`frame` with the quasi-identifiers it lacks joined by customer_id from `sources` (the first holding one wins).

    A customer absent from that source gets null; a frame without customer_id is returned as it is.
    """
    if c.CUSTOMER_ID not in frame.columns:
        return frame
    for q in quasi_identifiers:
        source = next((s for s in sources if {c.CUSTOMER_ID, q} <= set(s.columns)), None)
        if q not in frame.columns and source is not None:
            frame = frame.join(_latest(source, q), on=c.CUSTOMER_ID, how="left", maintain_order="left")
    return frame
