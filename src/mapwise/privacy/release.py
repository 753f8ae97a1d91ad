"""What an audience must pass before it leaves mapwise: no forgotten customer, consent, k-anonymity."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mapwise import columns as c
from mapwise.params import PrivacyParams
from mapwise.privacy.consent import withhold
from mapwise.privacy.forget import forgotten
from mapwise.privacy.kanon import enforce_k_anonymity, with_quasi_identifiers


def context_tables(canonical_dir: Path, profiles: Path | None = None) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """The customers table (consent) and the tables quasi-identifiers are looked up in: customers, traits, profiles.

    A table that is not there yet (no source maps it, no profile stage run) is simply not consulted.
    """
    paths = (canonical_dir / f"{c.CUSTOMERS}.parquet", canonical_dir / f"{c.CUSTOMER_TRAITS}.parquet", profiles)
    tables = [pl.read_parquet(path) if path is not None and path.is_file() else None for path in paths]
    customers = tables[0] if tables[0] is not None else pl.DataFrame(schema={c.CUSTOMER_ID: pl.String})
    tables = [t for t in tables if t is not None]
    return customers, tables


def release(frame: pl.DataFrame, p: PrivacyParams, *, customers: pl.DataFrame, context: list[pl.DataFrame],
            what: str) -> tuple[pl.DataFrame, dict]:
    """The rows of an audience (one or more rows per customer_id) that may leave, and what was held back and why.

    Forgotten customers go first, then those without consent; the rest must be k-anonymous over the
    quasi-identifiers found in `context` (or, with on_fail: suppress, lose the rows of smaller groups).
    A refused export raises MapwiseError naming the smallest group.
    """
    gone = forgotten(p.forget_log)
    before = frame[c.CUSTOMER_ID].n_unique()
    frame = frame.filter(~pl.col(c.CUSTOMER_ID).is_in(list(gone))) if gone else frame
    report: dict = {"forgotten_customers": before - frame[c.CUSTOMER_ID].n_unique()}
    frame, report["consent"] = withhold(frame, customers, p.consent)
    k = p.k_anonymity
    people = with_quasi_identifiers(frame.select(c.CUSTOMER_ID).unique(), context, k.quasi_identifiers)  # one row each
    kept, report["k_anonymity"] = enforce_k_anonymity(people, k.quasi_identifiers, k.k, k.on_fail, what)
    if kept.height != people.height:  # suppressed customers leave with all their rows
        frame = frame.join(kept.select(c.CUSTOMER_ID), on=c.CUSTOMER_ID, how="semi", maintain_order="left")
    return frame, report


def held_back(held: dict) -> str:
    """What `release` kept out, as a short note ('' when nothing)."""
    no_consent = sum(w["customers"] for w in held["consent"]["withheld"].values())
    parts = [f"{n:,} {why}" for why, n in (("forgotten", held["forgotten_customers"]), ("without consent", no_consent),
                                           ("in groups smaller than k", held["k_anonymity"].get("suppressed_rows", 0)))
             if n]
    return f"; held back: {', '.join(parts)}" if parts else ""
